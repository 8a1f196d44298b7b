//! LeNet-5, declared with the library's graph builder: each layer's name is its state_dict name,
//! as in `tests/reference/lenet.py`'s PyTorch module.

use engine::graph::Graph;

/// LeNet-5 for `classes` classes of 1×28×28 images.
pub fn lenet(classes: usize) -> engine::Result<Graph> {
    let mut g = Graph::new();
    let x = g.input([1, 28, 28]);
    let labels = g.labels();
    let x = g.conv2d("conv1", x, 6, 5, 1, 2)?; // 1 → 6, kernel 5, padding 2: [6, 28, 28]
    let x = g.relu("relu1", x)?;
    let x = g.max_pool2d("pool1", x, 2, 2, 0)?; // [6, 14, 14]
    let x = g.conv2d("conv2", x, 16, 5, 1, 0)?; // [16, 10, 10]
    let x = g.relu("relu2", x)?;
    let x = g.max_pool2d("pool2", x, 2, 2, 0)?; // [16, 5, 5]
    let x = g.flatten("flatten", x)?; // [400]
    let x = g.linear("fc1", x, 120)?;
    let x = g.relu("relu3", x)?;
    let x = g.linear("fc2", x, 84)?;
    let x = g.relu("relu4", x)?;
    let logits = g.linear("fc3", x, classes)?;
    g.softmax_cross_entropy(logits, labels)?;
    Ok(g)
}
