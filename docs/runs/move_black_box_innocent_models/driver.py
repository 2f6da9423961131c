"""One-off diagnosis of seed 2's black-box MOVE verdict on innocent models.

Restores seed 2's owner (`--config.seed=2` of `move_blackbox,fashion_mnist`,
its workdir as WORKDIR) and scores, with the victim architecture's
black-box meta-classifier:

* the independent model against the eight references of the victim's
  architecture, against eight of its own architecture (width 16, trained
  by the white-box run in the same workdir) and against all sixteen
  (references_of_the_narrow_architecture.json);
* three benign models of the victim's architecture trained on the owner's
  half without the images MOVE restyled, streams 200-202
  (benign_models_without_the_restyled_images.json);
* two benign models of the victim's architecture trained on the thief's
  half, streams 300-301 (benign_models_on_the_thief_half.json).

The three ran as three scripts of these same lines; usage:
  PYTHONPATH=. python docs/runs/move_black_box_innocent_models/driver.py WORKDIR OUT_DIR
"""
import json
import os
import sys

import numpy as np

from configs import model_stealing as stealing_configs
from jaxwm.recipes import model_stealing
from jaxwm.recipes import stealing_methods
from jaxwm.train import recipe
from jaxwm.watermark import move

FIELDS = ("p_value", "paired_p_value", "reference_p_value", "suspect_score")


def verdict(owner, meta, suspect, references, fields=FIELDS):
  record = move.verify(owner.move, owner.key, meta, suspect, references,
                       move.BLACK_BOX).to_dict()
  return {name: record[name] for name in fields}


def benign_models(owner, main, config, data, streams, folder, test):
  out = {"n_train": int(len(data))}
  for stream in streams:
    model = recipe.train_model(config, data, stream=stream,
                               workdir=os.path.join(folder, str(stream)))
    out[stream] = {**verdict(owner, main.meta, model, main.benign_references),
                   "test_accuracy": model.evaluate(test)["accuracy"]}
  return out


def main(workdir, out_dir):
  config = stealing_configs.get_config("move_blackbox,fashion_mnist")
  config.seed = 2
  owner_data, attacker, test = recipe.load_owner_and_attacker(
      config, config.split.attacker_fraction)
  run = stealing_methods.Run(config, workdir, owner_data, attacker, test)
  owner = stealing_methods.MoveOwner(run)
  main_refs = owner.references(config)
  narrow_config = model_stealing.independent_config(config)
  narrow = owner.references(narrow_config)
  independent = recipe.train_model(
      narrow_config, attacker, stream=model_stealing.STREAMS["independent"],
      workdir=run.model_dir("independent", narrow_config, "attacker_half"))
  fields = FIELDS + ("reference_scores",)
  results = {
      "references_of_the_narrow_architecture": {
          name: verdict(owner, main_refs.meta, independent, refs, fields)
          for name, refs in (
              ("victim_arch_refs", main_refs.benign_references),
              ("width16_refs", narrow.benign_references),
              ("pooled_refs", main_refs.benign_references
               + narrow.benign_references))},
      "benign_models_without_the_restyled_images": benign_models(
          owner, main_refs, config, owner_data.replace(
              images=np.delete(owner_data.images, owner.key.indices, 0),
              labels=np.delete(owner_data.labels, owner.key.indices, 0)),
          (200, 201, 202), os.path.join(out_dir, "heldout_benign"), test),
      "benign_models_on_the_thief_half": benign_models(
          owner, main_refs, config, attacker, (300, 301),
          os.path.join(out_dir, "attacker_benign"), test),
  }
  for name, result in results.items():
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main(*sys.argv[1:])
