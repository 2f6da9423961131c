"""One-off diagnosis: seed 2's black-box verifier on two benign models
of the victim's architecture trained on the thief's half (the
independent model's data), streams 300-301."""
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
unseen = attacker
print("attacker half", len(unseen))
out = {"n_train": int(len(unseen))}
for stream in (300, 301):
  model = recipe.train_model(config, unseen, workdir=f"/work/runs/diag/attacker_benign_{stream}", stream=stream)
  r = move.verify(owner.move, owner.key, main.meta, model, main.benign_references, move.BLACK_BOX).to_dict()
  out[stream] = {k: r[k] for k in ("p_value", "paired_p_value", "reference_p_value", "suspect_score")}
  out[stream]["test_accuracy"] = model.evaluate(test)["accuracy"]
  print(stream, json.dumps(out[stream]), flush=True)
  json.dump(out, open("/work/runs/diag/bb_attacker_refs.json", "w"), indent=1)
