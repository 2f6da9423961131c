"""One-off driver: WILD and all-layer fine-tuning on one removal-matrix row
(the launcher's model, clean split and repair streams), each repaired model
measured as it comes and again after its running batch statistics are
re-estimated on the clean images (one epoch, parameters frozen).

  python probe.py ROW SEED WORKDIR OUT.jsonl [CONFIG_REST] [COLUMN[@LR],...]
"""
import dataclasses, json, os, sys, time
from configs import removal as removal_configs
from jaxwm import data as jaxwm_data
from jaxwm.defenses import repair_engine, repairs
from jaxwm.recipes import removal
from jaxwm.recipes.removal_rows import build_row
from jaxwm.train import recipe
import jax

row_name, seed, workdir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rest = sys.argv[5] if len(sys.argv) > 5 else "fashion_mnist"
specs = (sys.argv[6] if len(sys.argv) > 6 else
         "wild_js,wild_ce,fine_tuning_all,wild_js@0.03,wild_ce@0.03").split(",")
config = removal_configs.get_config(f"{row_name},{rest}")
config.seed = seed
t0 = time.time()
row = build_row(config, workdir)
clean, _ = jaxwm_data.disjoint_split(row.clean, config.removal.clean_fraction, config.seed)

def emit(tag, cell, settings=None):
  rec = {"row": row_name, "seed": seed, "tag": tag,
         "watermark_success": cell["watermark_success"],
         "benign_accuracy": cell["benign_accuracy"],
         "p_value": cell["verification"]["p_value"],
         "decision": cell["verification"].get("decision"),
         "clean_images": len(clean), "device": jax.devices()[0].platform,
         "seconds": round(time.time() - t0, 1)}
  if settings is not None:
    rec["settings"] = dataclasses.asdict(settings)
  print(json.dumps(rec), flush=True)
  with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")

emit("none", row.measure(row.model))
for spec in specs:
  column, _, lr = spec.partition("@")
  name, settings = removal.repair_settings(config, column)
  if lr:
    settings = dataclasses.replace(settings, learning_rate=float(lr))
  stream = removal.REPAIR_STREAMS[name]
  repaired = repairs.get_repair(name).run(
      row.config, row.model, clean, settings,
      workdir=os.path.join(workdir, f"probe_{row_name}_s{seed}_{spec}"), stream=stream)
  emit(spec, row.measure(repaired), settings)
  recal = recipe.train_model(
      repair_engine.repair_recipe(row.config, 1.0, 1), clean,
      stream=stream + 7, init_variables=repaired.variables,
      trainable=lambda path: False, input_transform=repair_engine.no_transform)
  emit(spec + "+bn", row.measure(recal), settings)
