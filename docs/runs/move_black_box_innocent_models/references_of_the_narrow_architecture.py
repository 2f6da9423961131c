"""One-off: seed 2's black-box verifier (victim-architecture meta-classifier)
scoring the independent model against benign references of the
independent model's architecture (width 16), restored from the white-box
run's workdir."""
import json
from configs import model_stealing as cfgs
from jaxwm.recipes import model_stealing as ms, stealing_methods as sm
from jaxwm.train import recipe
from jaxwm.watermark import move

config = cfgs.get_config("move_blackbox,fashion_mnist")
config.seed = 2
workdir = "/work/runs/ms/fmnist_seed2"
owner_data, attacker, test = recipe.load_owner_and_attacker(config, config.split.attacker_fraction)
run = sm.Run(config, workdir, owner_data, attacker, test)
owner = sm.MoveOwner(run)
main = owner.references(config)
ind_config = ms.independent_config(config)
# The width-16 owner's models (as the white-box run trained them); this
# trains a black-box meta-classifier for them, which is not used.
narrow = owner.references(ind_config)
independent = recipe.train_model(ind_config, attacker,
    workdir=run.model_dir("independent", ind_config, "attacker_half"),
    stream=ms.STREAMS["independent"])
out = {}
for name, refs in (("victim_arch_refs", main.benign_references),
                   ("width16_refs", narrow.benign_references),
                   ("pooled_refs", main.benign_references + narrow.benign_references)):
  r = move.verify(owner.move, owner.key, main.meta, independent, refs, move.BLACK_BOX).to_dict()
  out[name] = {k: r[k] for k in ("p_value", "paired_p_value", "reference_p_value", "suspect_score", "reference_scores")}
  print(name, json.dumps(out[name]))
json.dump(out, open("/work/runs/diag/bb_refs16.json", "w"), indent=1)
