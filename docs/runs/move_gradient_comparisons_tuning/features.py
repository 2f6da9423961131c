"""Diagnostic: hidden-unit-order-invariant white-box features on seed 2's models."""
import functools, json, os, sys, time
import jax, jax.numpy as jnp, numpy as np
from configs import model_stealing as stealing_configs
from jaxwm.recipes import model_stealing, stealing_methods
from jaxwm.steal import attacks as attacks_lib
from jaxwm import steal as steal_lib
from jaxwm.train import recipe, losses
from jaxwm.train import step as step_lib

WORKDIR = sys.argv[1]; OUT = sys.argv[2]; SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 2

@functools.lru_cache(maxsize=8)
def feature_fn(model):
  def loss(p, state, image, label):
    logits = model.apply({"params": p, **state}, image[None], train=False)
    return losses.cross_entropy(logits, label[None])[0]
  def one(params, state, xs, xb, y):
    ls, gs = jax.value_and_grad(loss)(params, state, xs, y)
    lb, gb = jax.value_and_grad(loss)(params, state, xb, y)
    out = [ls - lb]
    for a, b in zip(jax.tree_util.tree_leaves(gs), jax.tree_util.tree_leaves(gb)):
      if a.ndim < 2: continue
      na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
      out += [jnp.sum(a * b) / (na * nb + 1e-12), jnp.log(na + 1e-12) - jnp.log(nb + 1e-12),
              jnp.mean(jnp.sign(a) == jnp.sign(b)), jnp.log(na + 1e-12)]
    return jnp.stack(out)
  def batch(variables, xs, xb, y):
    variables = dict(variables); params = variables.pop("params")
    return jax.vmap(one, in_axes=(None, None, 0, 0, 0))(params, variables, xs, xb, y)
  return jax.jit(batch)

def feats(model, key, positions, bs=100):
  transformed, benign = key.pairs(positions)
  fn = feature_fn(model.model)
  out = []
  for s in range(0, len(positions), bs):
    xs = step_lib.to_float_images(jnp.asarray(transformed.images[s:s+bs]))
    xb = step_lib.to_float_images(jnp.asarray(benign[s:s+bs]))
    y = jnp.asarray(transformed.labels[s:s+bs], jnp.int32)
    out.append(np.asarray(fn(model.variables, xs, xb, y)))
  return np.concatenate(out)

config = stealing_configs.get_config("move_whitebox,fashion_mnist")
config.seed = SEED
owner_data, attacker, test = recipe.load_owner_and_attacker(config, config.split.attacker_fraction)
run = stealing_methods.Run(config, WORKDIR, owner_data, attacker, test)
owner = stealing_methods.MoveOwner(run)
key = owner.key
results = {}
def add(name, model):
  t = time.time()
  results[name] = {"meta": feats(model, key, key.meta_positions), "verify": feats(model, key, key.verification_positions),
                   "acc": model.evaluate(test)["accuracy"]}
  print(name, f"{time.time()-t:.0f}s", flush=True)

for arch_name, cfg in (("main", config), ("narrow", model_stealing.independent_config(config))):
  refs = owner.references(cfg)
  for i, m in enumerate(refs.victims): add(f"{arch_name}/victim{i}", m)
  # benign models the meta-classifier trains on: streams BENIGN+1..count
  count = config.meta.num_models
  for i in range(1, count + 1):
    m = recipe.train_model(cfg, run.owner, workdir=run.model_dir(f"benign{i}", cfg), stream=stealing_methods.BENIGN_STREAM + i)
    add(f"{arch_name}/benign{i}", m)
  for i, m in enumerate(refs.benign_references): add(f"{arch_name}/reference{i}", m)
  # controls
  vs = stealing_methods.VICTIM_STREAM + count; bs_ = stealing_methods.BENIGN_STREAM + count + 1
  add(f"{arch_name}/control_victim", recipe.train_model(cfg, owner.marked, stream=vs, workdir=run.model_dir(f"control_victim{vs}", cfg, *owner.parts)))
  add(f"{arch_name}/control_benign", recipe.train_model(cfg, run.owner, stream=bs_, workdir=run.model_dir(f"control_benign{bs_}", cfg)))

settings = steal_lib.StealConfig.from_dict(config.steal.to_dict())
for name in config.attacks:
  block = dataclasses_asdict = (__import__("dataclasses").asdict(getattr(settings, name)) if name != attacks_lib.DIRECT_COPY else {})
  folder = run.model_dir(f"stolen_{name}", config, owner.victim_parts, block)
  if name != attacks_lib.DIRECT_COPY and not os.path.isdir(folder):
    print("missing", folder); continue
  stolen = steal_lib.steal(name, owner.victim, run.attacker, config, settings, workdir=folder, stream=model_stealing.STREAMS[name])
  add(f"stolen/{name}", stolen.model)
icfg = model_stealing.independent_config(config)
add("narrow/independent", recipe.train_model(icfg, run.attacker, workdir=run.model_dir("independent", icfg, "attacker_half"), stream=model_stealing.STREAMS["independent"]))
np.savez(OUT, **{f"{k}|{part}": v[part] for k, v in results.items() for part in ("meta", "verify")},
         **{f"{k}|acc": np.array(v["acc"]) for k, v in results.items()})
print("done")
