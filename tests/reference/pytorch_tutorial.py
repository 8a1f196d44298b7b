"""The tutorial's three networks in PyTorch, for comparison with this engine on the same machine,
and the engine's fast_cnn (FastCnn: conv, batch norm, two linear layers; tests/reference/fast_cnn.py
trains it with its own recipe).

Usage: python3 pytorch_tutorial.py MNIST_DIR [--epochs N] [--limit-train N] [--limit-test N]
                                [--batch-size N] [--lr X] [--nets simple_cnn,inception,resnet]
                                [--threads N]

Reads the gzip IDX files itself, keeps the data on the device (like the engine's GPU gather, so
the timing compares training, not data loading), shuffles each epoch, SGD lr 0.01 momentum 0.5,
cross-entropy, and prints 'Accuracy on test set' with the epoch's seconds like the binaries.
--threads pins PyTorch's intra-op threads (the bench passes as many as the engine's CPU driver
uses); the default is PyTorch's own choice.
"""
import argparse, gzip, struct, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return torch.frombuffer(bytearray(data[4 + 4 * len(dims):]), dtype=torch.uint8).reshape(dims)


class SimpleCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.pooling = nn.MaxPool2d(2)
        self.fc = nn.Linear(320, 10)

    def forward(self, x):
        x = F.relu(self.pooling(self.conv1(x)))
        x = F.relu(self.pooling(self.conv2(x)))
        return self.fc(x.flatten(1))


class InceptionA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch1x1 = nn.Conv2d(c, 16, 1)
        self.branch5x5_1 = nn.Conv2d(c, 16, 1)
        self.branch5x5_2 = nn.Conv2d(16, 24, 5, padding=2)
        self.branch3x3_1 = nn.Conv2d(c, 16, 1)
        self.branch3x3_2 = nn.Conv2d(16, 24, 3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, 3, padding=1)
        self.branch_pool = nn.Conv2d(c, 24, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x)))
        d = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([a, b, c, d], 1)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(88, 20, 5)
        self.incep1 = InceptionA(10)
        self.incep2 = InceptionA(20)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        x = F.relu(self.mp(self.conv1(x)))
        x = self.incep1(x)
        x = F.relu(self.mp(self.conv2(x)))
        x = self.incep2(x)
        return self.fc(x.flatten(1))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.rblock1 = ResBlock(16)
        self.rblock2 = ResBlock(32)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        x = self.rblock1(self.mp(F.relu(self.conv1(x))))
        x = self.rblock2(self.mp(F.relu(self.conv2(x))))
        return self.fc(x.flatten(1))


class FastCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 32, 3)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(800, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--limit-train", type=int, default=60000)
    p.add_argument("--limit-test", type=int, default=10000)
    p.add_argument("--nets", default="simple_cnn,inception,resnet")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    norm = lambda x: ((x.float() / 255 - 0.1307) / 0.3081).unsqueeze(1).to(dev)
    xtr = norm(idx(f"{a.dir}/train-images-idx3-ubyte.gz")[:a.limit_train])
    ytr = idx(f"{a.dir}/train-labels-idx1-ubyte.gz")[:a.limit_train].long().to(dev)
    xte = norm(idx(f"{a.dir}/t10k-images-idx3-ubyte.gz")[:a.limit_test])
    yte = idx(f"{a.dir}/t10k-labels-idx1-ubyte.gz")[:a.limit_test].long().to(dev)
    nets = {"simple_cnn": SimpleCnn, "inception": Inception, "resnet": ResNet}
    print(f"pytorch {torch.__version__} on {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads")
    for name in a.nets.split(","):
        torch.manual_seed(1)
        model = nets[name]().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.5)
        for epoch in range(1, a.epochs + 1):
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.time()
            model.train()
            order = torch.randperm(len(xtr), device=dev)
            total = 0.0
            for i in range(0, len(xtr), a.batch_size):
                idxs = order[i:i + a.batch_size]
                opt.zero_grad()
                loss = F.cross_entropy(model(xtr[idxs]), ytr[idxs])
                loss.backward()
                opt.step()
                total += loss.detach()
            if dev == "cuda":
                torch.cuda.synchronize()
            secs = time.time() - t
            model.eval()
            with torch.no_grad():
                correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                              for i in range(0, len(xte), 1000))
            steps = (len(xtr) + a.batch_size - 1) // a.batch_size
            print(f"{name}: Accuracy on test set: {100 * correct / len(xte):.2f}%  (epoch {epoch}/{a.epochs}: "
                  f"train loss {total.item() / steps:.4f}, {secs:.1f} s, {len(xtr) / secs:.0f} images/s)", flush=True)


if __name__ == "__main__":
    main()
