"""LeNet-5 in PyTorch, the module the `lenet` example's weights load into with strict=True.

Usage (PyTorch and safetensors from PyPI; CI does not need them):

    venv/bin/python tests/reference/lenet.py --names tests/fixtures/lenet_state_dict.txt
        writes the module's state_dict names and shapes, one `name shape` a line (the fixture
        models/tests/lenet.rs compares the example's graph with)
    venv/bin/python tests/reference/lenet.py --check runs/lenet/model.safetensors ../shared/mnist
        loads the example's weights strictly and prints the test accuracy PyTorch gets with them
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from pytorch_tutorial import idx


class LeNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", help="write the state_dict's names and shapes to this file")
    parser.add_argument("--check", nargs=2, metavar=("WEIGHTS", "MNIST_DIR"))
    args = parser.parse_args()
    model = LeNet()
    if args.names:
        with open(args.names, "w") as f:
            for name, tensor in model.state_dict().items():
                f.write(f"{name} {list(tensor.shape)}\n")
    if args.check:
        weights, data = args.check
        model.load_state_dict(load_file(weights), strict=True)
        images = idx(f"{data}/t10k-images-idx3-ubyte.gz").float()
        labels = idx(f"{data}/t10k-labels-idx1-ubyte.gz").long()
        x = ((images / 255 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            correct = (model(x).argmax(1) == labels).sum().item()
        print(f"PyTorch, strict load of {weights}: Accuracy on test set: {100 * correct / len(labels):.2f}%")


if __name__ == "__main__":
    main()
