//! The `lenet` example's network has the state_dict PyTorch's LeNet-5 module has
//! (`tests/reference/lenet.py` wrote the fixture): the same names, in the same order, with the
//! same shapes, so its safetensors load into that module with `strict=True`.

#[path = "../examples/lenet/network.rs"]
mod network;

#[test]
fn lenet_has_pytorchs_state_dict_names_and_shapes() {
    let fixture = include_str!("../../tests/fixtures/lenet_state_dict.txt");
    let graph = network::lenet(10).unwrap();
    let ours: Vec<String> = graph.params().iter().map(|p| format!("{} {:?}", p.name, p.shape)).collect();
    let pytorch: Vec<&str> = fixture.lines().collect();
    assert_eq!(ours, pytorch);
    assert_eq!(graph.param_count(), 61_706, "LeNet-5's parameter count");
}
