"""Every kept G_real snapshot measured as the pair-measures stage measures G_real (200 samples, its seed 5),
beside the pick's own score (128 samples, seed 7919): does the pick's choice hold on samples it never saw?"""
import json, sys, time
from pathlib import Path
from toolchain.torch_utils import configure_cpu_math
configure_cpu_math(2)
from toolchain.proxy.eval_set import write_proxy_set
from toolchain.evaluation.face_likeness import FaceCounter, at_size, face_model_paths, folder_images
from toolchain.evaluation.pair_measures import generator_samples
from toolchain.evaluation.snapshot_pick import pick_by_faces
from toolchain.generators.train_real import kept_snapshots
from toolchain.pipeline.stages.pair_measures import CEILING_SEED_OFFSET
gan = Path(sys.argv[1]); out = Path(sys.argv[2])
t0 = time.time()
d = out / "ceiling_photos"
if not d.exists():
    write_proxy_set("alter", d, n=200, seed=0 + CEILING_SEED_OFFSET, size=128, role="unlabelled")
mf = face_model_paths(True)
snaps = kept_snapshots(gan)
t1 = time.time()
pick = pick_by_faces(snaps, 128, model_for=mf)
t_pick = time.time() - t1
rows = []
with FaceCounter(mf) as fc:
    ceiling = fc.count(at_size(folder_images(d)[:200], 64))
    for (step, path), sc in zip(snaps, pick["scores"]):
        m = fc.count(generator_samples(path, 200))
        rows.append({"step": step, "pick_found_of_128": sc["found"], "measure_found_of_200": m.found,
                     "measure_vs_ceiling": m.rate / ceiling.rate})
res = {"picked": pick["step"], "pick_seconds": t_pick, "ceiling": ceiling.to_json(), "rows": rows, "seconds": time.time() - t0}
(out / "snapshots_face_likeness.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res, indent=1))
