"""fast_cnn's recipe in PyTorch: the reference for the engine's `fast_cnn` binary (same network,
optimizer and schedule), and the script its recipe was searched with.

Usage: python3 fast_cnn.py MNIST_DIR [--epochs 1] [--batch-size 64] [--lr 0.005]
                           [--label-smoothing 0.1] [--seed 1] [--threads 2]

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

On the CPU, with --threads intra-op threads (torch.set_num_threads).
"""
import argparse, time
import torch
import torch.nn.functional as F
from pytorch_tutorial import FastCnn, idx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    norm = lambda x: ((x.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    xtr = norm(idx(f"{a.dir}/train-images-idx3-ubyte.gz"))
    ytr = idx(f"{a.dir}/train-labels-idx1-ubyte.gz").long()
    xte = norm(idx(f"{a.dir}/t10k-images-idx3-ubyte.gz"))
    yte = idx(f"{a.dir}/t10k-labels-idx1-ubyte.gz").long()
    torch.manual_seed(a.seed)
    model = FastCnn()
    steps = (len(xtr) + a.batch_size - 1) // a.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, foreach=False)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps)
    gen = torch.Generator().manual_seed(a.seed)
    for epoch in range(1, a.epochs + 1):
        t = time.time()
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), a.batch_size):
            idxs = order[i:i + a.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idxs]), ytr[idxs], label_smoothing=a.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
        secs = time.time() - t
        model.eval()
        with torch.no_grad():
            correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                          for i in range(0, len(xte), 1000))
        print(f"epoch {epoch}: test accuracy {100 * correct / len(xte):.2f}%, "
              f"train seconds {secs:.1f} ({len(xtr) / secs:.0f} images/s)", flush=True)


if __name__ == "__main__":
    main()
