"""The tutorial's own PyTorch recipe for one network: torchvision's MNIST through a DataLoader
(batch 64, shuffled, num_workers 0, ToTensor then Normalize((0.1307,), (0.3081,))), SGD lr 0.01
momentum 0.5, cross-entropy, then the test pass, on CUDA where there is one. The bench times
this process, start to exit,
beside the engine's `simple_cnn --epochs 1` (`bench --vs-pytorch`).

Usage: python3 pytorch_recipe.py MNIST_DIR [--net simple_cnn] [--epochs 1]

MNIST_DIR holds the four .gz files; they are linked into a temporary torchvision root
(MNIST/raw/), where torchvision checks their MD5 sums and extracts them, offline.
"""
import argparse, os, shutil, tempfile, time
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from pytorch_tutorial import SimpleCnn, Inception, ResNet

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def main():
    start = time.time()
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--net", default="simple_cnn", choices=["simple_cnn", "inception", "resnet"])
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="mnist-recipe-")
    try:
        run(a, root, start)
    finally:
        shutil.rmtree(root)


def run(a, root, start):
    os.makedirs(f"{root}/MNIST/raw")
    for name in FILES:
        os.symlink(os.path.abspath(f"{a.dir}/{name}"), f"{root}/MNIST/raw/{name}")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(root, train=True, download=True, transform=transform)
    test = datasets.MNIST(root, train=False, download=True, transform=transform)
    train_loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=0)
    test_loader = DataLoader(test, batch_size=64, shuffle=False, num_workers=0)
    torch.manual_seed(1)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = {"simple_cnn": SimpleCnn, "inception": Inception, "resnet": ResNet}[a.net]().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    for epoch in range(1, a.epochs + 1):
        model.train()
        for x, y in train_loader:
            x, y = x.to(dev), y.to(dev)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(dev), y.to(dev)
                correct += (model(x).argmax(1) == y).sum().item()
        print(f"{a.net}: Accuracy on test set: {100 * correct / len(test):.2f}%  (epoch {epoch}/{a.epochs}, "
              f"{time.time() - start:.1f} s since start, {dev}, {torch.get_num_threads()} threads)", flush=True)


if __name__ == "__main__":
    main()
