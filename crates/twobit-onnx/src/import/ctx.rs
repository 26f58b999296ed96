//! State of an import in progress: constants, value names, the nodes and tensors so far,
//! and helpers to read a node's attributes and inputs with errors that name the node.
use super::tensor::Const;
use crate::proto::{attr_type, AttributeProto, NodeProto};
use crate::OnnxError;
use std::collections::{BTreeMap, HashMap, HashSet};
use twobit_format::graph::{infer_shapes, Node, Op, INPUT};
use twobit_format::{FloatTensor, Tensor};

/// One ONNX node being imported, with its resolved (unique) name.
pub(crate) struct N<'a> {
    /// The node.
    pub p: &'a NodeProto,
    /// Its name (generated when the file has none).
    pub name: String,
}

impl N<'_> {
    /// The operator type.
    pub fn op(&self) -> &str {
        &self.p.op_type
    }

    /// An "unsupported attribute" error for this node.
    pub fn bad(&self, detail: impl Into<String>) -> OnnxError {
        OnnxError::UnsupportedAttribute {
            op: self.p.op_type.clone(),
            node: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Refuses attributes outside `allowed`.
    pub fn allow(&self, allowed: &[&str]) -> Result<(), OnnxError> {
        match self
            .p
            .attribute
            .iter()
            .find(|a| !allowed.contains(&a.name.as_str()))
        {
            Some(a) => Err(self.bad(format!("attribute '{}' is not supported", a.name))),
            None => Ok(()),
        }
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.p.attribute.iter().find(|a| a.name == name)
    }

    fn typed(&self, name: &str, ty: i32) -> Result<Option<&AttributeProto>, OnnxError> {
        match self.attr(name) {
            Some(a) if !a.ref_attr_name.is_empty() => {
                Err(self.bad(format!("attribute '{name}' refers to a function attribute")))
            }
            // Writers always set the type; an unset one (0) is accepted as the expected type.
            Some(a) if a.r#type != ty && a.r#type != 0 => Err(self.bad(format!(
                "attribute '{name}' has type {}, expected {ty}",
                a.r#type
            ))),
            other => Ok(other),
        }
    }

    /// An integer attribute.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.typed(name, attr_type::INT)?.map_or(default, |a| a.i))
    }

    /// A float attribute.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        let v = self.typed(name, attr_type::FLOAT)?.map_or(default, |a| a.f);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.bad(format!("attribute '{name}' is not finite")))
        }
    }

    /// A list-of-integers attribute.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.typed(name, attr_type::INTS)?.map(|a| a.ints.clone()))
    }

    /// A list of non-negative integers, `len` long (or `default` when absent).
    pub fn usizes(&self, name: &str, len: usize, default: usize) -> Result<Vec<usize>, OnnxError> {
        match self.ints(name)? {
            None => Ok(vec![default; len]),
            Some(v) if v.len() == len => v
                .iter()
                .map(|&x| usize::try_from(x).map_err(|_| self.bad(format!("{name} {v:?}"))))
                .collect(),
            Some(v) => Err(self.bad(format!("{name} {v:?} should have {len} values (2-D only)"))),
        }
    }

    /// A string attribute.
    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        Ok(self
            .typed(name, attr_type::STRING)?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    /// Input `i`'s ONNX name, `None` when absent or empty (an omitted optional input).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.p
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Requires between `min` and `max` inputs.
    pub fn arity(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.p.input.len();
        if n < min || n > max || self.input(0).is_none() {
            return Err(self.bad(format!("takes {min} to {max} inputs, has {n}")));
        }
        Ok(())
    }
}

/// The import in progress.
pub(crate) struct Ctx {
    /// Opset version of the default domain.
    pub opset: i64,
    /// Constant values by ONNX name.
    pub consts: HashMap<String, Const>,
    /// Activation values: ONNX name -> graph value name.
    pub values: HashMap<String, String>,
    /// How many times each ONNX value is read (the graph output counts once).
    pub uses: HashMap<String, usize>,
    /// The nodes so far.
    pub nodes: Vec<Node>,
    /// The tensors so far.
    pub tensors: BTreeMap<String, Tensor>,
    /// Per-sample input shape.
    pub input: [usize; 3],
    names: HashSet<String>,
    stored: HashMap<String, String>,
}

/// A safe, readable name: ASCII letters, digits and `_.-/:` kept, the rest replaced.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-/:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('t');
    }
    // The file format reserves these suffixes and the safetensors metadata key.
    for suffix in [".codes", ".levels", ".thresholds"] {
        if out.ends_with(suffix) {
            out.push('_');
        }
    }
    if out == "__metadata__" {
        out.insert(0, 't');
    }
    out
}

impl Ctx {
    /// A fresh context for an input of per-sample shape `input`.
    pub fn new(opset: i64, input: [usize; 3]) -> Ctx {
        let mut names = HashSet::new();
        names.insert(INPUT.to_string());
        Ctx {
            opset,
            consts: HashMap::new(),
            values: HashMap::new(),
            uses: HashMap::new(),
            nodes: Vec::new(),
            tensors: BTreeMap::new(),
            input,
            names,
            stored: HashMap::new(),
        }
    }

    /// A unique name (values, nodes and tensors share one namespace) derived from `hint`.
    pub fn unique(&mut self, hint: &str) -> String {
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut i = 1;
        while self.names.contains(&name) {
            name = sanitize(&format!("{base}_{i}"));
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// The graph value for input `i` of `n`, which must be an activation.
    pub fn value(&self, n: &N, i: usize) -> Result<String, OnnxError> {
        let name = n
            .input(i)
            .ok_or_else(|| n.bad(format!("input {i} is missing")))?;
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        if self.consts.contains_key(name) {
            return Err(n.bad(format!(
                "input {i} ('{name}') is a constant where an activation is expected"
            )));
        }
        Err(OnnxError::UndefinedValue {
            name: name.to_string(),
            op: n.op().to_string(),
            node: n.name.clone(),
        })
    }

    /// Whether input `i` of `n` is a constant.
    pub fn is_const(&self, n: &N, i: usize) -> bool {
        n.input(i).is_some_and(|s| self.consts.contains_key(s))
    }

    /// The constant for input `i` of `n` (an initializer or a Constant's output).
    pub fn constant(&self, n: &N, i: usize) -> Result<&Const, OnnxError> {
        let name = n
            .input(i)
            .ok_or_else(|| n.bad(format!("input {i} is missing")))?;
        if self.values.contains_key(name) {
            return Err(n.bad(format!(
                "input {i} ('{name}') must be a constant (initializer), not computed"
            )));
        }
        self.consts
            .get(name)
            .ok_or_else(|| OnnxError::MissingInitializer {
                name: name.to_string(),
                op: n.op().to_string(),
                node: n.name.clone(),
            })
    }

    /// Stores f32 values as a tensor named after `hint`; refuses NaN and infinities.
    pub fn add_tensor(
        &mut self,
        hint: &str,
        shape: Vec<usize>,
        vals: Vec<f32>,
    ) -> Result<String, OnnxError> {
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(OnnxError::NonFinite(hint.to_string()));
        }
        let name = self.unique(hint);
        self.tensors.insert(
            name.clone(),
            Tensor::Float(FloatTensor::from_f32(shape, &vals)),
        );
        Ok(name)
    }

    /// Stores input `i` of `n` (a constant) unchanged as a tensor; a constant read by several
    /// nodes is stored once.
    pub fn const_tensor(&mut self, n: &N, i: usize) -> Result<String, OnnxError> {
        let c = self.constant(n, i)?.clone();
        let onnx = n.input(i).unwrap_or_default().to_string();
        if let Some(t) = self.stored.get(&onnx) {
            return Ok(t.clone());
        }
        let vals = c.f32s();
        let t = self.add_tensor(&onnx, c.dims, vals)?;
        self.stored.insert(onnx, t.clone());
        Ok(t)
    }

    /// Appends a node computing `op` from `inputs`; its output is `n`'s first output.
    pub fn push(&mut self, n: &N, op: Op, inputs: Vec<String>) -> Result<String, OnnxError> {
        self.only_first_output(n)?;
        let onnx = n.p.output.first().cloned().unwrap_or_default();
        if onnx.is_empty() {
            return Err(n.bad("has no output"));
        }
        let output = self.unique(&onnx);
        let name = self.unique(&n.name);
        self.nodes.push(Node {
            name,
            op,
            inputs,
            output: output.clone(),
        });
        self.values.insert(onnx, output.clone());
        Ok(output)
    }

    /// Makes `n`'s first output another name for the graph value `value` (a removed node).
    pub fn alias(&mut self, n: &N, value: String) -> Result<(), OnnxError> {
        self.only_first_output(n)?;
        let onnx = n.p.output.first().cloned().unwrap_or_default();
        self.values.insert(onnx, value);
        Ok(())
    }

    /// Refuses a node whose second (third, ...) output is read by anything.
    pub fn only_first_output(&self, n: &N) -> Result<(), OnnxError> {
        for (k, o) in n.p.output.iter().enumerate().skip(1) {
            if !o.is_empty() && self.uses.get(o).copied().unwrap_or(0) > 0 {
                return Err(n.bad(format!(
                    "output {k} ('{o}') is used; only the first is supported"
                )));
            }
        }
        Ok(())
    }

    /// Per-sample shape of a graph value (computed from the nodes so far).
    pub fn shape(&self, n: &N, value: &str) -> Result<Vec<usize>, OnnxError> {
        let shapes = infer_shapes(&self.input, &self.nodes, |t| {
            self.tensors.get(t).map(Tensor::shape)
        })
        .map_err(OnnxError::GraphInvalid)?;
        shapes
            .get(value)
            .cloned()
            .ok_or_else(|| OnnxError::UndefinedValue {
                name: value.to_string(),
                op: n.op().to_string(),
                node: n.name.clone(),
            })
    }
}
