"""fast_cnn's recipe in PyTorch: the reference for the engine's `fast_cnn` binary (same network,
optimizer and schedule), and the script its recipe was searched with.

Usage: python3 fast_cnn.py MNIST_DIR [--epochs 1] [--batch-size 64] [--lr 0.005]
                           [--label-smoothing 0.1] [--seed 1] [--threads 2]
                           [--augment shift=S,rotate=R,scale=K]

FastCnn (pytorch_tutorial.py: conv 1->24 k5, batch norm, maxpool 2, relu, conv 24->32 k3, batch
norm, maxpool 2, relu, linear 800->256, relu, linear 256->10), torch.manual_seed(SEED) before it
is built. Reads the gzip IDX files itself and keeps all of MNIST in memory as normalized float
tensors ((x / 255 - 0.1307) / 0.3081; no DataLoader, so the timing is training, not data loading),
shuffles each epoch with a torch.Generator seeded with SEED, the last batch of an epoch short.
AdamW (lr, weight decay 0.01, foreach=False) under OneCycleLR(max_lr=lr, total_steps=epochs x
steps per epoch, PyTorch's defaults otherwise), stepped after every optimizer step; cross-entropy
with --label-smoothing. After each epoch, the test set in eval mode (running statistics) at batch
1000, one line:

    epoch E: test accuracy XX.XX%, train seconds S.S (N images/s)

On CUDA where PyTorch has it (as pytorch_tutorial.py: the data on the device), else on the CPU
with --threads intra-op threads (torch.set_num_threads).

--augment (off by default; each key optional, 0 if left out) transforms every training batch, each
step, on the raw pixel values (0..255) before the normalization; never the test set. A
torch.Generator seeded with SEED (not the shuffle's) draws u0..u3 uniform in [-1, 1) per image:
translation tx = round_half_even(S u0), ty = round_half_even(S u1) whole pixels, angle a = R u2
degrees, scale sc = 1 + K u3. Output pixel (row i, column j), with cx = (W-1)/2, cy = (H-1)/2,
dx = j - cx - tx, dy = i - cy - ty, reads the source at

    sx = cx + (cos(a) dx + sin(a) dy) / sc,   sy = cy + (-sin(a) dx + cos(a) dy) / sc

bilinearly: x0 = floor(sx), fx = sx - x0, y0 = floor(sy), fy = sy - y0, the neighbours (x0, y0),
(x0+1, y0), (x0, y0+1), (x0+1, y0+1) weighted (1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx fy, a
neighbour outside the image counting as 0. The same distribution as torchvision's
RandomAffine(degrees=R, translate=(S/28, S/28), scale=(1-K, 1+K), interpolation=BILINEAR, fill=0).
"""
import argparse, time
import torch
import torch.nn.functional as F
from pytorch_tutorial import FastCnn, idx


def augment_arg(text):
    keys = {"shift": 0.0, "rotate": 0.0, "scale": 0.0}
    for kv in text.split(","):
        k, _, v = kv.partition("=")
        if k not in keys:
            raise argparse.ArgumentTypeError(f"unknown --augment key {k!r}")
        keys[k] = float(v)
    return keys


def augment(x, gen, shift, rotate, scale):
    """The random affine transform of the docstring on raw (N, H, W) float images."""
    n, h, w = x.shape
    u = torch.rand(n, 4, generator=gen) * 2 - 1
    tx, ty = (shift * u[:, :2]).round().T[..., None, None]  # torch.round: half to even
    a = torch.deg2rad(rotate * u[:, 2])[:, None, None]
    sc = (1 + scale * u[:, 3])[:, None, None]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    dx = torch.arange(w) - cx - tx
    dy = torch.arange(h)[:, None] - cy - ty
    sx = cx + (a.cos() * dx + a.sin() * dy) / sc
    sy = cy + (-a.sin() * dx + a.cos() * dy) / sc
    x0, y0 = sx.floor(), sy.floor()
    fx, fy = sx - x0, sy - y0
    flat = x.reshape(n, h * w)

    def at(xs, ys):  # zero outside the image
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        i = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().reshape(n, h * w)
        return flat.gather(1, i).reshape(n, h, w) * inside

    return ((1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x0 + 1, y0)
            + (1 - fx) * fy * at(x0, y0 + 1) + fx * fy * at(x0 + 1, y0 + 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--augment", type=augment_arg)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    norm = lambda x: ((x.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    raw = idx(f"{a.dir}/train-images-idx3-ubyte.gz")
    xtr = norm(raw)
    ytr = idx(f"{a.dir}/train-labels-idx1-ubyte.gz").long()
    xte = norm(idx(f"{a.dir}/t10k-images-idx3-ubyte.gz"))
    yte = idx(f"{a.dir}/t10k-labels-idx1-ubyte.gz").long()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
    torch.manual_seed(a.seed)
    model = FastCnn().to(dev)
    steps = (len(xtr) + a.batch_size - 1) // a.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, foreach=False)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps)
    gen = torch.Generator().manual_seed(a.seed)
    aug_gen = torch.Generator().manual_seed(a.seed)
    for epoch in range(1, a.epochs + 1):
        t = time.time()
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), a.batch_size):
            idxs = order[i:i + a.batch_size]
            x = norm(augment(raw[idxs].float(), aug_gen, **a.augment)).to(dev) if a.augment else xtr[idxs]
            opt.zero_grad()
            loss = F.cross_entropy(model(x), ytr[idxs], label_smoothing=a.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
        if dev == "cuda":
            torch.cuda.synchronize()
        secs = time.time() - t
        model.eval()
        with torch.no_grad():
            correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                          for i in range(0, len(xte), 1000))
        print(f"epoch {epoch}: test accuracy {100 * correct / len(xte):.2f}%, "
              f"train seconds {secs:.1f} ({len(xtr) / secs:.0f} images/s)", flush=True)


if __name__ == "__main__":
    main()
