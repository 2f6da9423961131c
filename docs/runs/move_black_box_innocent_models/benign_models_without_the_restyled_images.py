"""One-off diagnosis: do benign models that never saw the verification
images' originals score like the independent model under seed 2's
black-box verifier? Three benign width-32 models on the owner's half
minus the images MOVE restyled (key.indices), streams 200-202."""
import json
import numpy as np
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
keep = np.setdiff1d(np.arange(len(owner_data)), owner.key.indices)
unseen = owner_data.replace(images=owner_data.images[keep], labels=owner_data.labels[keep])
print("owner images", len(owner_data), "without the restyled ones", len(unseen))
out = {"n_train": int(len(unseen))}
for stream in (200, 201, 202):
  model = recipe.train_model(config, unseen, workdir=f"/work/runs/diag/heldout_benign_{stream}", stream=stream)
  r = move.verify(owner.move, owner.key, main.meta, model, main.benign_references, move.BLACK_BOX).to_dict()
  out[stream] = {k: r[k] for k in ("p_value", "paired_p_value", "reference_p_value", "suspect_score")}
  out[stream]["test_accuracy"] = model.evaluate(test)["accuracy"]
  print(stream, json.dumps(out[stream]), flush=True)
  json.dump(out, open("/work/runs/diag/bb_heldout_refs.json", "w"), indent=1)
