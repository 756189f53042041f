"""Evaluate a build's method estimator and oracle on its held-out photos blurred by a Gaussian of several radii
(benchmarks/results/sharpen_alter/README.md). Usage: python blur_photos.py RUN"""
import sys, numpy as np, torch
from PIL import Image, ImageFilter
from toolchain.estimator.io import load_estimator
from toolchain.estimator.predict import predict_arrays
from toolchain.evaluation.evaluate import load_labelled_set, _load_images
torch.set_num_threads(2)
run = sys.argv[1]
es = load_labelled_set(f'{run}/heldout/set')
imgs0 = _load_images([p for p,_ in es.items], 128)
for name, path in [('method', f'{run}/train/estimator.pt'), ('oracle', f'{run}/pair_measures/oracle/train/estimator.pt')]:
    model, _ = load_estimator(path)
    schema = model.schema
    gi = [p.name for p in schema.discrete].index('glasses')
    gt_c, gt_d = schema.encode([schema.validate(v) for _,v in es.items])
    for r in (0, 0.75, 1.5, 2.5):
        imgs = imgs0 if r == 0 else np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(r))) for i in imgs0])
        pc, pd, _ = predict_arrays(model, imgs, model.config.input_size, torch.device('cpu'))
        acc = (pd == gt_d).mean(0)
        none = gt_d[:, gi] == 0
        print(name, 'blur', r, 'mean %.3f' % acc.mean(), 'glasses %.3f' % acc[gi], 'none recall %.2f' % (pd[none, gi] == 0).mean(),
              'sunglasses answered %d' % (pd[:, gi] == 5).sum(), ' '.join(f'{p.name[:6]}={a:.2f}' for p, a in zip(schema.discrete, acc)))
