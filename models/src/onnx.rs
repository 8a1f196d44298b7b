//! The static graph exported as an ONNX model (opset 13) with the weights as initializers:
//! input `input` [N, 1, 28, 28] float32 (N dynamic), normalized as in training, output `logits`
//! [N, classes]. The messages are a subset of onnx.proto declared for prost (the protobuf
//! encoding is prost's; no protoc is needed), with onnx.proto's field numbers.

use engine::graph::{Graph, Op};
use prost::Message;

/// ONNX's `ModelProto` (onnx.proto): the top-level message of a `.onnx` file.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The version of the ONNX IR the model follows.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// The tool that wrote the model.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Human-readable documentation of the model.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The computation graph, with its weights.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// The operator sets the graph uses, each at a version.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// ONNX's `OperatorSetIdProto` (onnx.proto): an operator set and its version.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// The operator set's domain; empty for the default, `ai.onnx`.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// The operator set's version (the opset).
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// ONNX's `GraphProto` (onnx.proto): the nodes, the constant tensors, and the graph's inputs
/// and outputs.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// The nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (the weights), named as the node inputs that read them.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// The graph's inputs: name, element type and shape.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// The graph's outputs: name, element type and shape.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// ONNX's `NodeProto` (onnx.proto): one operator applied to named values.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Names of the values it reads, in the operator's input order.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Names of the values it writes.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name (optional in ONNX).
    #[prost(string, tag = "3")]
    pub name: String,
    /// The operator (`Conv`, `Gemm`, …) in the default domain.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// The operator's attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// An attribute: an int (type 2) or a list of ints (type 7), the only kinds these ops take.
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// The attribute's name (`kernel_shape`, `axis`, …).
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value of a FLOAT attribute.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// The value of an INT attribute.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// The values of an INTS attribute.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// `AttributeProto.AttributeType`: which field holds the value (1 FLOAT, 2 INT, 7 INTS).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// A float32 tensor (data_type 1) in raw little-endian bytes.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// The shape, outermost dimension first.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, a `TensorProto.DataType` (1 is FLOAT).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// The name node inputs refer to it by.
    #[prost(string, tag = "8")]
    pub name: String,
    /// The elements, row-major, as little-endian bytes.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// ONNX's `ValueInfoProto` (onnx.proto): a value's name and type (a graph input or output).
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// ONNX's `TypeProto` (onnx.proto): a value's type, of which only the tensor case is declared.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// A tensor's type (onnx.proto's `tensor_type`, a `TypeProto.Tensor`).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// ONNX's `TypeProto.Tensor` (onnx.proto): a tensor's element type and shape.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Element type, a `TensorProto.DataType` (1 is FLOAT).
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// The shape, where known.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// ONNX's `TensorShapeProto` (onnx.proto): a shape, dimension by dimension.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// The dimensions, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// One dimension: a size, or a name for a size chosen at run time (onnx.proto's oneof).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A named size chosen at run time (`N`, the batch).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

const FLOAT: i32 = 1;
const OPSET: i64 = 13;

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: 7,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: 2, ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: 1, ..Default::default() }
}

/// kernel_shape, strides and pads of a square window.
fn window(kernel: usize, stride: usize, pad: usize) -> Vec<AttributeProto> {
    vec![ints("kernel_shape", &[kernel, kernel]), ints("strides", &[stride, stride]), ints("pads", &[pad; 4])]
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    let shape = TensorShapeProto { dim: dims };
    let tensor_type = TensorTypeProto { elem_type: FLOAT, shape: Some(shape) };
    ValueInfoProto { name: name.into(), r#type: Some(TypeProto { tensor_type: Some(tensor_type) }) }
}

fn batch_and(sizes: &[usize]) -> Vec<Dimension> {
    let batch = Dimension { dim_param: Some("N".into()), dim_value: None };
    std::iter::once(batch)
        .chain(sizes.iter().map(|&s| Dimension { dim_value: Some(s as i64), dim_param: None }))
        .collect()
}

/// The ONNX model of `graph` with the packed parameters `values`, encoded; its description
/// names the network and how its input is normalized (`normalization`, as the weights'
/// metadata writes it).
pub fn export(graph: &Graph, values: &[f32], network: &str, normalization: &str) -> Vec<u8> {
    let input_shape = graph.input_shape().map_or_else(|_| "?".into(), |[c, h, w]| format!("[N, {c}, {h}, {w}]"));
    let classes = graph.classes().map_or_else(|_| "?".into(), |c| c.to_string());
    // A batch norm's batch count is no input of ONNX's BatchNormalization.
    let initializer = graph
        .params()
        .iter()
        .filter(|p| !p.counter)
        .map(|p| TensorProto {
            dims: p.shape.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: p.name.clone(),
            raw_data: values[p.offset..p.offset + p.len()].iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    // The logits are the node the loss reads; ONNX calls that output `logits`.
    let logits = graph.nodes().iter().find_map(|n| match n.op {
        Op::SoftmaxCrossEntropy { logits, .. } => Some(logits),
        _ => None,
    });
    let name = |i: usize| if Some(i) == logits { "logits".to_string() } else { graph.nodes()[i].name.clone() };
    let mut nodes = Vec::new();
    let (mut input, mut output) = (None, None);
    for (i, node) in graph.nodes().iter().enumerate() {
        let (op, inputs, attribute): (&str, Vec<String>, Vec<AttributeProto>) = match &node.op {
            Op::Input => {
                input = Some(value_info(&node.name, batch_and(&node.shape)));
                continue;
            }
            Op::Labels => continue,
            Op::SoftmaxCrossEntropy { logits, .. } => {
                output = Some(value_info("logits", batch_and(&graph.nodes()[*logits].shape[..1])));
                continue;
            }
            Op::Conv2d { x, weight, bias, kernel, stride, pad } => {
                let params = vec![name(*x), graph.params()[*weight].name.clone(), graph.params()[*bias].name.clone()];
                ("Conv", params, window(*kernel, *stride, *pad))
            }
            Op::MaxPool2d { x, kernel, stride, pad } => ("MaxPool", vec![name(*x)], window(*kernel, *stride, *pad)),
            Op::AvgPool2d { x, kernel, stride, pad } => {
                let mut attributes = window(*kernel, *stride, *pad);
                attributes.push(int("count_include_pad", 1));
                ("AveragePool", vec![name(*x)], attributes)
            }
            Op::Relu { x } => ("Relu", vec![name(*x)], vec![]),
            Op::Add { a, b } => ("Add", vec![name(*a), name(*b)], vec![]),
            Op::Concat { xs } => ("Concat", xs.iter().map(|&x| name(x)).collect(), vec![int("axis", 1)]),
            Op::Flatten { x } => ("Flatten", vec![name(*x)], vec![int("axis", 1)]),
            Op::Linear { x, weight, bias } => {
                let params = vec![name(*x), graph.params()[*weight].name.clone(), graph.params()[*bias].name.clone()];
                ("Gemm", params, vec![int("transB", 1)])
            }
            // Evaluation: dropout is the identity.
            Op::Dropout { x, .. } => ("Identity", vec![name(*x)], vec![]),
            // Evaluation: the running statistics (after a linear layer, ONNX's input is [N, C]).
            Op::BatchNorm { x, weight, bias, running_mean, running_var, .. } => {
                let tensors = [weight, bias, running_mean, running_var].map(|&p| graph.params()[p].name.clone());
                let inputs = std::iter::once(name(*x)).chain(tensors).collect();
                ("BatchNormalization", inputs, vec![float("epsilon", engine::ops::batch_norm::EPS)])
            }
        };
        nodes.push(NodeProto {
            input: inputs,
            output: vec![name(i)],
            name: node.name.clone(),
            op_type: op.into(),
            attribute,
        });
    }
    let graph = GraphProto {
        node: nodes,
        name: network.into(),
        initializer,
        input: input.into_iter().collect(),
        output: output.into_iter().collect(),
    };
    ModelProto {
        ir_version: 7,
        producer_name: "mnist-gpu engine".into(),
        doc_string: format!(
            "The tutorial's {network}. Input: float32 {input_shape} normalized as in training, {normalization}; output: \
             the logits [N, {classes}]."
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
    }
    .encode_to_vec()
}
