"""Train one estimator with the build's own TrainConfig, sharpen S and SEED changed, and evaluate it on the build's
held-out set (benchmarks/results/sharpen_alter/README.md).
Usage: SEED=k python train_one_estimator.py RUN OUT S [DATASET RUN_JSON] (default: RUN/pairs, RUN/train/run.json)"""
import sys, json, numpy as np, torch, warnings
warnings.filterwarnings("ignore")
from toolchain.estimator.train import TrainConfig, train
from toolchain.estimator.io import load_estimator
from toolchain.estimator.predict import predict_arrays
from toolchain.evaluation.evaluate import load_labelled_set, _load_images
torch.set_num_threads(2)
run, out, sharpen = sys.argv[1], sys.argv[2], float(sys.argv[3])
ds = sys.argv[4] if len(sys.argv) > 4 else f'{run}/pairs'
ref = json.load(open(f'{run}/train/run.json'))['train_config'] if ds.endswith('/pairs') else json.load(open(sys.argv[5]))['train_config']
cfg = TrainConfig.from_json({**ref, 'sharpen': sharpen, 'seed': int(__import__('os').environ.get('SEED', ref['seed']))})
train([ds], out, cfg, device='cpu')
model, _ = load_estimator(f'{out}/estimator.pt')
es = load_labelled_set(f'{run}/heldout/set')
schema = model.schema
gi = [p.name for p in schema.discrete].index('glasses')
gt_c, gt_d = schema.encode([schema.validate(v) for _,v in es.items])
imgs = _load_images([p for p,_ in es.items], 128)
pc, pd, _ = predict_arrays(model, imgs, model.config.input_size, torch.device('cpu'))
acc = (pd == gt_d).mean(0); none = gt_d[:, gi] == 0
print('seed', cfg.seed, 'sharpen', sharpen, ds, 'mean %.3f' % acc.mean(), 'none recall %.2f' % (pd[none, gi] == 0).mean(), 'sunglasses answered', (pd[:, gi] == 5).sum(),
      ' '.join(f'{p.name}={a:.3f}' for p, a in zip(schema.discrete, acc)))
