import sys, numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
d = np.load(sys.argv[1]); arch = "main"; M = int(sys.argv[2]) if len(sys.argv) > 2 else 10
names = sorted({k.split("|")[0] for k in d.files})
F = d[names[0] + "|verify"].shape[1]; nl = (F - 1) // 4
cols = ["dloss"] + [f"{s}{l}" for l in range(nl) for s in ("cos", "lnr", "agr", "ln")]
tr_v = [f"main/victim{i}" for i in range(3)]; tr_b = [f"main/benign{i}" for i in (1, 2, 3)]
refs = [f"main/reference{i}" for i in range(8)]
sus = ["main/control_victim", "main/control_benign"] + [n for n in names if n.startswith("stolen/")]
X = np.concatenate([d[n + "|meta"] for n in tr_v + tr_b])
y = np.concatenate([np.full(len(d[n + "|meta"]), int(n in tr_v)) for n in tr_v + tr_b])
subsets = {"lnr": ["lnr"], "lnr+ln": ["lnr", "ln"], "lnr+cos": ["lnr", "cos"], "lnr+cos+agr": ["lnr", "cos", "agr"], "ln": ["ln"], "all-dloss": ["lnr", "cos", "agr", "ln"]}
rng = np.random.default_rng(0)
nv = len(d[refs[0] + "|verify"])
draws = [rng.choice(nv, M, replace=False) for _ in range(200)]
print("subset".ljust(12), "clf", "acc ", " ".join(s.split("/")[1][:8].rjust(8) for s in sus))
for name, pre in subsets.items():
  idx = [i for i, c in enumerate(cols) if any(c.startswith(p) and c[len(p):].isdigit() for p in pre)]
  sc = StandardScaler().fit(X[:, idx])
  for cname, clf in (("lr", LogisticRegression(C=1.0, max_iter=3000)), ("mlp", MLPClassifier((8, 8), max_iter=300, random_state=0))):
    clf.fit(sc.transform(X[:, idx]), y)
    conf = {n: np.clip(clf.predict_proba(sc.transform(d[n + "|verify"][:, idx]))[:, 1], 1e-6, 1 - 1e-6) for n in refs + sus + tr_v + tr_b}
    acc = 0.5 * (np.mean(conf["main/control_victim"] > .5) + np.mean(conf["main/control_benign"] < .5))
    out = []
    for s in sus:
      rej = 0
      for dr in draws:
        cs, cb = conf[s][dr], conf[refs[0]][dr]
        t = stats.ttest_rel(cs, cb, alternative="greater").pvalue
        score = lambda n: np.log(conf[n][dr].mean() / (1 - conf[n][dr].mean()))
        r = np.array([score(n) for n in refs]); K = len(r)
        pr = stats.t.sf((score(s) - r.mean()) / (r.std(ddof=1) * np.sqrt(1 + 1 / K)), K - 1)
        rej += max(t, pr) < 0.01
      out.append(rej / len(draws))
    print(f"{name:12s} {cname:3s} {acc:.2f}", " ".join(f"{o:8.2f}" for o in out))
