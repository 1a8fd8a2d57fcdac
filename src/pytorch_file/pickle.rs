//! A restricted unpickler: the opcodes `torch.save` emits (pickle protocols 2 to 5, plus the
//! Python 2 string opcodes of old files) and the handful of globals a tensor file names. Python's
//! unpickler calls whatever global a file names, so loading an untrusted pickle can run any code;
//! this one knows a fixed list of globals, refuses every other by name, and never calls anything:
//! the tensor-rebuild functions become [`TensorSpec`]s, `OrderedDict` an ordinary [`Dict`].
//!
//! Every read is bounds-checked, every allocation is bounded by the input's length, and values are
//! shared (`Rc`), so a small pickle cannot grow an exponential tree by re-reading its memo. Deep
//! structures are torn down iteratively (see [`dismantle`]), so no input overflows the stack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::tensor::{Dtype, StorageRef, TensorSpec};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error(
        "truncated: opcode {opcode} at byte {offset} needs {needed} bytes, only {available} remain"
    )]
    Truncated {
        offset: usize,
        opcode: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("truncated: the pickle ends at byte {offset} without its STOP opcode")]
    NoStop { offset: usize },
    #[error("opcode 0x{opcode:02x} ({name}) at byte {offset} is not one that tensor files use; refusing the file")]
    UnknownOpcode {
        opcode: u8,
        name: &'static str,
        offset: usize,
    },
    #[error(
        "refusing global `{module}.{name}` at byte {offset}: tensor files only need torch's tensor-rebuild \
         functions, its storage types, collections.OrderedDict and _codecs.encode, and loading any other object could run \
         arbitrary code (re-save the file with `torch.save(model.state_dict(), path)`)"
    )]
    ForbiddenGlobal {
        module: String,
        name: String,
        offset: usize,
    },
    #[error("storage `{key}` has type `{storage_type}`, a dtype hwrun cannot read")]
    UnsupportedStorage { key: String, storage_type: String },
    #[error("malformed at byte {offset} ({opcode}): {problem}")]
    Malformed {
        offset: usize,
        opcode: &'static str,
        problem: String,
    },
}

impl PickleError {
    /// Whether the error comes from input that ends too early.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            PickleError::Truncated { .. } | PickleError::NoStop { .. }
        )
    }
}

/// The globals a tensor file may name.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`, the type of every state_dict.
    OrderedDict,
    /// `torch._utils._rebuild_tensor` (torch < 1.0): storage, offset, size, stride.
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2`: storage, offset, size, stride, requires_grad, hooks[, metadata].
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`: tensor, requires_grad, hooks.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`: tensor, requires_grad, hooks, state.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2`: a tensor with Python attributes: func, type, args, state.
    RebuildFromTypeV2,
    /// `_codecs.encode(text, 'latin1')`: how protocol 2 pickles Python 3 `bytes`.
    CodecsEncode,
    /// `torch.Tensor` or `torch.nn.parameter.Parameter`, as the type argument of `_rebuild_from_type_v2`.
    TensorType,
    /// A `torch.<Name>Storage` class; `dtype` is `None` for storages hwrun cannot read.
    StorageType { name: Rc<str>, dtype: Option<Dtype> },
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
            ("torch", storage)
                if storage.ends_with("Storage")
                    && storage.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Global::StorageType {
                    name: format!("torch.{storage}").into(),
                    dtype: Dtype::from_storage_name(storage),
                }
            }
            _ => return None,
        })
    }

    fn name(&self) -> &str {
        match self {
            Global::OrderedDict => "collections.OrderedDict",
            Global::CodecsEncode => "_codecs.encode",
            Global::RebuildTensor => "torch._utils._rebuild_tensor",
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2",
            Global::RebuildParameter => "torch._utils._rebuild_parameter",
            Global::RebuildParameterWithState => "torch._utils._rebuild_parameter_with_state",
            Global::RebuildFromTypeV2 => "torch._tensor._rebuild_from_type_v2",
            Global::TensorType => "torch.Tensor",
            Global::StorageType { name, .. } => name,
        }
    }
}

/// A sequence (tuple or list items) that tears its children down without recursion.
#[derive(Debug, Default)]
pub struct Seq(pub Vec<Value>);

impl Drop for Seq {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.0));
    }
}

/// A Python dict (or `OrderedDict`): entries in insertion order, a later `SETITEM` of the same
/// key replacing the value in place, as Python does.
#[derive(Debug, Default)]
pub struct Dict {
    entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

impl Dict {
    pub fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    /// The value of string key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index
            .get(&Key::Str(key.into()))
            .map(|&i| &self.entries[i].1)
    }

    fn insert(&mut self, key: Value, value: Value) -> Result<(), String> {
        let hashed = Key::of(&key, 0, &mut { MAX_KEY_ELEMENTS })?;
        match self.index.get(&hashed) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(hashed, self.entries.len());
                self.entries.push((key, value));
            }
        }
        Ok(())
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        dismantle(entries.into_iter().flat_map(|(k, v)| [k, v]).collect());
    }
}

/// How deeply tuples may nest inside a dict key.
const MAX_KEY_DEPTH: usize = 16;

/// How many values a dict key may hold in all, nested tuples counted: the memo shares values,
/// so a few KB of pickle can describe a tuple of tuples with 10^9 leaves, which copying into a
/// hashable key would try to allocate. State dicts key by strings.
const MAX_KEY_ELEMENTS: usize = 4096;

/// The hashable values that may key a dict.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Rc<[u8]>),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Vec<Key>),
}

impl Key {
    /// The hashable copy of `value`, which may hold no more than `budget` values in all.
    fn of(value: &Value, depth: usize, budget: &mut usize) -> Result<Key, String> {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            format!("a dict key of more than {MAX_KEY_ELEMENTS} values is not a tensor file's")
        })?;
        Ok(match value {
            Value::None => Key::None,
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::BigInt(b) => Key::BigInt(Rc::clone(b)),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Str(s) => Key::Str(Rc::clone(s)),
            Value::Bytes(b) => Key::Bytes(Rc::clone(b)),
            Value::Tuple(items) if depth < MAX_KEY_DEPTH => Key::Tuple(
                items
                    .0
                    .iter()
                    .map(|v| Key::of(v, depth + 1, budget))
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(format!("{} cannot be a dict key", describe(other))),
        })
    }
}

/// A Python value as far as tensor files need them.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<RefCell<Seq>>),
    Dict(Rc<RefCell<Dict>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorSpec>),
}

/// Drops a value tree without recursing: the children of every container nobody else holds are
/// moved onto a work list before the container itself is dropped (empty).
fn dismantle(mut work: Vec<Value>) {
    while let Some(value) = work.pop() {
        match value {
            Value::Tuple(mut seq) => {
                if let Some(seq) = Rc::get_mut(&mut seq) {
                    work.append(&mut seq.0);
                }
            }
            Value::List(mut list) => {
                if let Some(list) = Rc::get_mut(&mut list) {
                    work.append(&mut list.get_mut().0);
                }
            }
            Value::Dict(mut dict) => {
                if let Some(dict) = Rc::get_mut(&mut dict) {
                    let dict = dict.get_mut();
                    dict.index.clear();
                    work.extend(
                        std::mem::take(&mut dict.entries)
                            .into_iter()
                            .flat_map(|(k, v)| [k, v]),
                    );
                }
            }
            _ => {}
        }
    }
}

/// A short description of a value for error messages ("a dict of 3 entries (keys `a`, `b`, `c`)").
pub fn describe(value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => format!("the bool {}", if *b { "True" } else { "False" }),
        Value::Int(i) => format!("the int {i}"),
        Value::BigInt(_) => "a big int".into(),
        Value::Float(f) => format!("the float {f}"),
        Value::Str(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::Tuple(items) => format!("a tuple of {} items", items.0.len()),
        Value::List(items) => format!(
            "a list of {} items",
            items.try_borrow().map_or(0, |l| l.0.len())
        ),
        Value::Dict(dict) => match dict.try_borrow() {
            Ok(dict) => {
                let keys: Vec<String> = dict
                    .entries
                    .iter()
                    .take(5)
                    .map(|(k, _)| format!("`{}`", key_text(k)))
                    .collect();
                let more = if dict.entries.len() > keys.len() {
                    ", ..."
                } else {
                    ""
                };
                format!(
                    "a dict of {} entries (keys {}{more})",
                    dict.entries.len(),
                    keys.join(", ")
                )
            }
            Err(_) => "a dict".into(),
        },
        Value::Global(global) => format!("the global `{}`", global.name()),
        Value::Storage(storage) => format!("storage `{}`", storage.key),
        Value::Tensor(spec) => format!("a tensor of shape {:?}", spec.size),
    }
}

/// The longest text [`key_text`] gives: names go into error messages, and a key of shared
/// long strings could otherwise expand into hundreds of megabytes of message.
const MAX_KEY_TEXT: usize = 200;

/// A dict key as one segment of a dotted tensor name, cut at [`MAX_KEY_TEXT`] characters.
pub fn key_text(key: &Value) -> String {
    let mut text = String::new();
    push_key_text(key, &mut text);
    if text.len() > MAX_KEY_TEXT {
        let cut = (0..=MAX_KEY_TEXT)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Appends `key`'s text to `out`, stopping once `out` is past [`MAX_KEY_TEXT`].
fn push_key_text(key: &Value, out: &mut String) {
    if out.len() > MAX_KEY_TEXT {
        return;
    }
    match key {
        Value::Str(s) => out.extend(s.chars().take(MAX_KEY_TEXT + 1)),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::None => out.push_str("None"),
        Value::Float(f) => out.push_str(&f.to_string()),
        Value::Tuple(items) => {
            for (i, item) in items.0.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_key_text(item, out);
                if out.len() > MAX_KEY_TEXT {
                    return;
                }
            }
        }
        other => out.push_str(&describe(other)),
    }
}

/// A finished unpickling: the object and every storage its persistent ids named, in order.
pub struct Pickled {
    pub root: Value,
    pub storages: Vec<Rc<StorageRef>>,
    /// Bytes the pickle took up to and including its STOP opcode.
    pub consumed: usize,
}

/// Unpickles one pickle from the start of `data` (which may continue with more).
pub fn unpickle(data: &[u8]) -> Result<Pickled, PickleError> {
    let mut machine = Machine {
        data,
        pos: 0,
        op_pos: 0,
        op: "",
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
    };
    let root = machine.run()?;
    Ok(Pickled {
        root,
        storages: std::mem::take(&mut machine.storages),
        consumed: machine.pos,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode starts and its name, for error messages.
    op_pos: usize,
    op: &'static str,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: Vec<Rc<StorageRef>>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let mut values = std::mem::take(&mut self.stack);
        values.extend(std::mem::take(&mut self.memo).into_values());
        dismantle(values);
    }
}

impl Machine<'_> {
    fn malformed(&self, problem: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_pos,
            opcode: self.op,
            problem: problem.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(PickleError::Truncated {
                offset: self.op_pos,
                opcode: self.op,
                needed: n,
                available,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64_len(&mut self) -> Result<usize, PickleError> {
        // A length beyond the address space cannot fit in the input either: report it as truncation.
        Ok(usize::try_from(u64::from_le_bytes(self.array()?)).unwrap_or(usize::MAX))
    }

    /// A newline-terminated line (the text arguments of GLOBAL).
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated {
                offset: self.op_pos,
                opcode: self.op,
                needed: rest.len() + 1,
                available: rest.len(),
            });
        };
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(line)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(e) => Err(self.malformed(format!("string is not UTF-8: {e}"))),
        }
    }

    /// A Python 2 `str`: bytes that were text in practice; decoded as Latin-1 when not UTF-8.
    fn py2_str(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        Ok(Value::Str(match std::str::from_utf8(bytes) {
            Ok(s) => s.into(),
            Err(_) => bytes
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into(),
        }))
    }

    fn bytes(&mut self, n: usize) -> Result<Value, PickleError> {
        Ok(Value::Bytes(self.take(n)?.into()))
    }

    fn push(&mut self, value: Value) {
        self.stack.push(value);
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self
            .marks
            .last()
            .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err(self.malformed("pops past a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("the stack is empty"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        if self.stack.is_empty()
            || self
                .marks
                .last()
                .is_some_and(|&mark| mark >= self.stack.len())
        {
            return Err(self.malformed("the stack is empty"));
        }
        let last = self.stack.len() - 1;
        Ok(&mut self.stack[last])
    }

    /// The items pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(self.malformed(format!("needs {n} items on the stack")));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo entry {index} was never stored")))?;
        self.push(value);
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self.top()?.clone();
        if let Some(old) = self.memo.insert(index, value) {
            dismantle(vec![old]);
        }
        Ok(())
    }

    fn int(&mut self, bytes_le: &[u8]) -> Value {
        if bytes_le.len() <= 8 {
            let negative = bytes_le.last().is_some_and(|&b| b & 0x80 != 0);
            let mut full = [if negative { 0xff } else { 0 }; 8];
            full[..bytes_le.len()].copy_from_slice(bytes_le);
            Value::Int(i64::from_le_bytes(full))
        } else {
            Value::BigInt(bytes_le.into())
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value, PickleError> {
        Global::resolve(module, name)
            .map(Value::Global)
            .ok_or_else(|| PickleError::ForbiddenGlobal {
                module: module.to_owned(),
                name: name.to_owned(),
                offset: self.op_pos,
            })
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let Value::List(list) = self.top()?.clone() else {
            let found = describe(self.top()?);
            return Err(self.malformed(format!("appends to {found}, not a list")));
        };
        let mut list = list
            .try_borrow_mut()
            .map_err(|_| self.malformed("list is in use"))?;
        list.0.extend(items);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.malformed("odd number of items for a dict"));
        }
        let Value::Dict(dict) = self.top()?.clone() else {
            let found = describe(self.top()?);
            return Err(self.malformed(format!("sets items of {found}, not a dict")));
        };
        let mut dict = dict
            .try_borrow_mut()
            .map_err(|_| self.malformed("dict is in use"))?;
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            dict.insert(key, value)
                .map_err(|problem| self.malformed(problem))?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_pos = self.pos;
            let Some(&opcode) = self.data.get(self.pos) else {
                return Err(PickleError::NoStop { offset: self.pos });
            };
            self.pos += 1;
            self.op = opcode_name(opcode);
            match opcode {
                b'\x80' => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(
                            self.malformed(format!("pickle protocol {protocol} is newer than 5"))
                        );
                    }
                }
                b'\x95' => {
                    self.array::<8>()?; // FRAME: a length hint for buffered readers
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    let value = self.pop()?;
                    dismantle(vec![value]);
                }
                b'1' => {
                    let items = self.pop_mark()?;
                    dismantle(items);
                }
                b'2' => {
                    let value = self.top()?.clone();
                    self.push(value);
                }
                b'N' => self.push(Value::None),
                b'\x88' => self.push(Value::Bool(true)),
                b'\x89' => self.push(Value::Bool(false)),
                b'J' => {
                    let value = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(value.into()));
                }
                b'K' => {
                    let value = self.u8()?;
                    self.push(Value::Int(value.into()));
                }
                b'M' => {
                    let value = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(value.into()));
                }
                b'\x8a' | b'\x8b' => {
                    let n = if opcode == b'\x8a' {
                        usize::from(self.u8()?)
                    } else {
                        self.u32()? as usize
                    };
                    let bytes = self.take(n)?.to_vec();
                    let value = self.int(&bytes);
                    self.push(value);
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(value));
                }
                // Text, Python 2 `str` and bytes, each with a 1-, 4- or 8-byte length.
                b'X' | b'\x8c' | b'\x8d' | b'T' | b'U' | b'B' | b'C' | b'\x8e' => {
                    let n = match opcode {
                        b'\x8c' | b'U' | b'C' => usize::from(self.u8()?),
                        b'X' | b'T' | b'B' => self.u32()? as usize,
                        _ => self.u64_len()?,
                    };
                    let value = match opcode {
                        b'X' | b'\x8c' | b'\x8d' => self.utf8(n)?,
                        b'T' | b'U' => self.py2_str(n)?,
                        _ => self.bytes(n)?,
                    };
                    self.push(value);
                }
                b')' => self.push(Value::Tuple(Rc::default())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(Seq(items))));
                }
                b'\x85' | b'\x86' | b'\x87' => {
                    let items = self.pop_n(usize::from(opcode - 0x84))?;
                    self.push(Value::Tuple(Rc::new(Seq(items))));
                }
                b']' => self.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(Seq(items)))));
                }
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::default()));
                    self.set_items(items)?;
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    self.set_items(items)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = self.global(&module, &name)?;
                    self.push(global);
                }
                b'\x93' => {
                    let parts = self.pop_n(2)?;
                    let (Value::Str(module), Value::Str(name)) = (&parts[0], &parts[1]) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    let global = self.global(module, name)?;
                    self.push(global);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.call(&callable, &args)?;
                    self.push(result);
                }
                b'b' => {
                    let state = self.pop()?;
                    // A state_dict's `_metadata` attribute and a tensor's Python attributes: not needed.
                    if !matches!(self.top()?, Value::Dict(_) | Value::Tensor(_)) {
                        let found = describe(self.top()?);
                        return Err(self.malformed(format!(
                            "BUILD of {found}: only dicts and tensors take a state"
                        )));
                    }
                    dismantle(vec![state]);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(&pid)?;
                    self.storages.push(Rc::clone(&storage));
                    self.push(Value::Storage(storage));
                }
                // BINGET, LONG_BINGET, BINPUT, LONG_BINPUT: a 1- or 4-byte memo index.
                b'h' | b'j' | b'q' | b'r' => {
                    let index = if matches!(opcode, b'h' | b'q') {
                        self.u8()?.into()
                    } else {
                        self.u32()?
                    };
                    if matches!(opcode, b'h' | b'j') {
                        self.memo_get(index)?;
                    } else {
                        self.memo_put(index)?;
                    }
                }
                b'\x94' => {
                    let index = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo overflow"))?;
                    self.memo_put(index)?;
                }
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        opcode,
                        name: self.op,
                        offset: self.op_pos,
                    })
                }
            }
        }
    }

    /// A storage persistent id: `('storage', storage_type, key, location, numel)`, with a sixth
    /// item `view_metadata` (None or `(view_key, offset, size)`) in the legacy format.
    fn persistent_load(&self, pid: &Value) -> Result<Rc<StorageRef>, PickleError> {
        let bad = || {
            self.malformed(format!(
                "persistent id {} is not a storage reference",
                describe(pid)
            ))
        };
        let Value::Tuple(items) = pid else {
            return Err(bad());
        };
        let (typename, storage_type, key, numel, view) = match items.0.as_slice() {
            [t, s, k, _location, n] => (t, s, k, n, &Value::None),
            [t, s, k, _location, n, v] => (t, s, k, n, v),
            _ => return Err(bad()),
        };
        let (
            Value::Str(typename),
            Value::Global(Global::StorageType { name, dtype }),
            Value::Int(numel),
        ) = (typename, storage_type, numel)
        else {
            return Err(bad());
        };
        if &**typename != "storage" {
            return Err(bad());
        }
        let key: Rc<str> = match key {
            Value::Str(key) => Rc::clone(key),
            Value::Int(key) => key.to_string().into(),
            _ => return Err(bad()),
        };
        let Some(dtype) = *dtype else {
            return Err(PickleError::UnsupportedStorage {
                key: key.to_string(),
                storage_type: name.to_string(),
            });
        };
        let numel = u64::try_from(*numel).map_err(|_| bad())?;
        let view = match view {
            Value::None => None,
            Value::Tuple(view) => match view.0.as_slice() {
                [_view_key, Value::Int(offset), Value::Int(size)] => Some((
                    u64::try_from(*offset).map_err(|_| bad())?,
                    u64::try_from(*size).map_err(|_| bad())?,
                )),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(Rc::new(StorageRef {
            key,
            dtype,
            numel,
            view,
        }))
    }

    /// REDUCE: what calling an allowed global gives, without running anything.
    fn call(&self, callable: &Value, args: &Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            return Err(self.malformed(format!(
                "calls {}, which is not a global",
                describe(callable)
            )));
        };
        let Value::Tuple(args) = args else {
            return Err(self.malformed(format!(
                "calls `{}` with {}, not a tuple",
                global.name(),
                describe(args)
            )));
        };
        let bad_args = || {
            self.malformed(format!(
                "`{}` called with unexpected arguments",
                global.name()
            ))
        };
        let args = args.0.as_slice();
        match global {
            Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Rc::default())),
            Global::CodecsEncode => match args {
                [Value::Str(text), Value::Str(encoding)] if &**encoding == "latin1" => {
                    let bytes: Option<Vec<u8>> =
                        text.chars().map(|c| u8::try_from(c).ok()).collect();
                    bytes.map(|b| Value::Bytes(b.into())).ok_or_else(bad_args)
                }
                _ => Err(bad_args()),
            },
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                let expected = if *global == Global::RebuildTensor {
                    4..=4
                } else {
                    6..=7
                };
                if !expected.contains(&args.len()) {
                    return Err(bad_args());
                }
                let (Value::Storage(storage), Value::Int(offset)) = (&args[0], &args[1]) else {
                    return Err(bad_args());
                };
                let (size, stride) = (
                    ints(&args[2]).ok_or_else(bad_args)?,
                    ints(&args[3]).ok_or_else(bad_args)?,
                );
                Ok(Value::Tensor(Rc::new(TensorSpec {
                    storage: Rc::clone(storage),
                    offset: *offset,
                    size,
                    stride,
                })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => match args {
                [tensor @ Value::Tensor(_), Value::Bool(_), _hooks]
                | [tensor @ Value::Tensor(_), Value::Bool(_), _hooks, _] => Ok(tensor.clone()),
                _ => Err(bad_args()),
            },
            Global::RebuildFromTypeV2 => match args {
                // The rebuild functions themselves, never `_rebuild_from_type_v2` again: no recursion.
                [func @ Value::Global(
                    Global::RebuildTensor | Global::RebuildTensorV2 | Global::RebuildParameter,
                ), Value::Global(Global::TensorType), inner, _state] => {
                    match self.call(func, inner)? {
                        tensor @ Value::Tensor(_) => Ok(tensor),
                        other => Err(self.malformed(format!(
                            "`_rebuild_from_type_v2` rebuilt {}, not a tensor",
                            describe(&other)
                        ))),
                    }
                }
                _ => Err(bad_args()),
            },
            _ => Err(bad_args()),
        }
    }
}

/// A tuple of non-negative ints (a shape or strides).
fn ints(value: &Value) -> Option<Vec<i64>> {
    let Value::Tuple(items) = value else {
        return None;
    };
    items
        .0
        .iter()
        .map(|v| {
            if let Value::Int(i) = v {
                Some(*i)
            } else {
                None
            }
        })
        .collect()
}

/// The pickle opcode names of the pickle specification (`pickletools`), for error messages.
fn opcode_name(opcode: u8) -> &'static str {
    match opcode {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'\x80' => "PROTO",
        b'\x81' => "NEWOBJ",
        b'\x82' => "EXT1",
        b'\x83' => "EXT2",
        b'\x84' => "EXT4",
        b'\x85' => "TUPLE1",
        b'\x86' => "TUPLE2",
        b'\x87' => "TUPLE3",
        b'\x88' => "NEWTRUE",
        b'\x89' => "NEWFALSE",
        b'\x8a' => "LONG1",
        b'\x8b' => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        b'\x8c' => "SHORT_BINUNICODE",
        b'\x8d' => "BINUNICODE8",
        b'\x8e' => "BINBYTES8",
        b'\x8f' => "EMPTY_SET",
        b'\x90' => "ADDITEMS",
        b'\x91' => "FROZENSET",
        b'\x92' => "NEWOBJ_EX",
        b'\x93' => "STACK_GLOBAL",
        b'\x94' => "MEMOIZE",
        b'\x95' => "FRAME",
        b'\x96' => "BYTEARRAY8",
        b'\x97' => "NEXT_BUFFER",
        b'\x98' => "READONLY_BUFFER",
        _ => "not a pickle opcode",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{'w': _rebuild_tensor_v2(<FloatStorage '0', 6 elements>, 1, (2, 2), (3, 1), False, OrderedDict())}`
    fn state_dict_pickle() -> Vec<u8> {
        let mut p =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02("
                .to_vec();
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend(b"K\x01K\x02K\x02\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)Rtq\x03Ru.");
        p
    }

    #[test]
    fn reads_a_state_dict_with_one_tensor_view() {
        let pickled = unpickle(&state_dict_pickle()).unwrap();
        assert_eq!(pickled.consumed, state_dict_pickle().len());
        let Value::Dict(dict) = &pickled.root else {
            panic!("not a dict")
        };
        let Some(Value::Tensor(spec)) = dict.borrow().get("w").cloned() else {
            panic!("no tensor w")
        };
        assert_eq!(
            (spec.offset, spec.size.clone(), spec.stride.clone()),
            (1, vec![2, 2], vec![3, 1])
        );
        let storage = StorageRef {
            key: "0".into(),
            dtype: Dtype::F32,
            numel: 6,
            view: None,
        };
        assert_eq!(*spec.storage, storage);
        assert_eq!(pickled.storages.len(), 1);
    }

    #[test]
    fn refuses_a_global_naming_it() {
        let err = unpickle(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00ls\x85R.")
            .err()
            .unwrap();
        assert_eq!(
            err,
            PickleError::ForbiddenGlobal {
                module: "posix".into(),
                name: "system".into(),
                offset: 2
            }
        );
        assert!(err.to_string().contains("`posix.system`"), "{err}");
        let err = unpickle(b"\x80\x04\x8c\x08__main__\x94\x8c\x06Custom\x94\x93)R.")
            .err()
            .unwrap();
        assert!(err.to_string().contains("`__main__.Custom`"), "{err}");
    }

    #[test]
    fn refuses_an_unknown_opcode_naming_it_and_its_offset() {
        let err = unpickle(b"\x80\x02]\x81.").err().unwrap();
        assert_eq!(
            err,
            PickleError::UnknownOpcode {
                opcode: 0x81,
                name: "NEWOBJ",
                offset: 3
            }
        );
        assert!(
            err.to_string().contains("NEWOBJ") && err.to_string().contains("byte 3"),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_reported_as_such() {
        let full = state_dict_pickle();
        for cut in 0..full.len() {
            let err = unpickle(&full[..cut])
                .err()
                .unwrap_or_else(|| panic!("cut at {cut} unpickled"));
            assert!(err.is_truncation(), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn oversized_lengths_are_truncation_not_allocation() {
        let err = unpickle(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f")
            .err()
            .unwrap();
        assert!(err.is_truncation(), "{err}");
        let err = unpickle(b"\x80\x02X\xff\xff\xff\xffab").err().unwrap();
        assert!(err.is_truncation(), "{err}");
    }

    #[test]
    fn memo_reuse_shares_instead_of_copying() {
        // t = (); 64 times: t = (t, t). A copying unpickler would need 2^64 nodes.
        let mut p = b"\x80\x02)q\x00".to_vec();
        for _ in 0..64 {
            p.extend(b"h\x00h\x00\x86q\x000");
        }
        p.extend(b"h\x00.");
        assert!(matches!(unpickle(&p).unwrap().root, Value::Tuple(_)));
    }

    #[test]
    fn a_dict_key_of_a_billion_shared_leaves_is_refused_not_copied() {
        // memo[0] = None; three times memo[0] = (memo[0],) * 1000; {memo[0]: None}.
        let mut p = b"\x80\x02Nq\x00".to_vec();
        for _ in 0..3 {
            p.push(b'(');
            p.extend(b"h\x00".repeat(1000));
            p.extend(b"tq\x000");
        }
        p.extend(b"}h\x00Ns.");
        let err = unpickle(&p).err().unwrap().to_string();
        assert!(err.contains("dict key of more than 4096 values"), "{err}");
        assert!(
            err.len() < 1000,
            "the message stays short: {} bytes",
            err.len()
        );
    }

    #[test]
    fn key_text_is_cut_short() {
        let long: Rc<str> = "x".repeat(1000).into();
        let key = Value::Tuple(Rc::new(Seq(vec![Value::Str(long); 100])));
        let text = key_text(&key);
        assert_eq!(text.chars().count(), MAX_KEY_TEXT + 1, "{text}");
        assert!(text.ends_with('…'));
    }

    #[test]
    fn deep_nesting_is_dropped_without_recursion() {
        let mut p = b"\x80\x02N".to_vec();
        p.extend(std::iter::repeat_n(b'\x85', 1_000_000));
        p.push(b'.');
        drop(unpickle(&p).unwrap());
        // And on the error path, a deep value left on the stack.
        p.pop();
        p.push(b'\x81');
        assert!(unpickle(&p).is_err());
    }

    #[test]
    fn setitem_replaces_a_repeated_key_in_place() {
        let pickled = unpickle(
            b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.",
        )
        .unwrap();
        let Value::Dict(dict) = &pickled.root else {
            panic!("not a dict")
        };
        let dict = dict.borrow();
        let entries: Vec<(String, i64)> = dict
            .entries()
            .iter()
            .map(|(k, v)| (key_text(k), if let Value::Int(i) = v { *i } else { -1 }))
            .collect();
        assert_eq!(entries, [("a".into(), 3), ("b".into(), 2)]);
    }

    #[test]
    fn python2_strings_bytes_and_wide_ints_are_values() {
        // (py2 str 'ab', py2 str b'\xe9' (Latin-1), bytes b'xy', -2 as LONG4, 2^64 as LONG1)
        let p = b"\x80\x02(U\x02abU\x01\xe9C\x02xy\x8b\x01\x00\x00\x00\xfe\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01t.";
        let Value::Tuple(items) = unpickle(p).unwrap().root else {
            panic!("not a tuple")
        };
        let texts: Vec<String> = items.0.iter().map(describe).collect();
        assert_eq!(
            texts,
            [
                "the string \"ab\"",
                "the string \"é\"",
                "2 bytes",
                "the int -2",
                "a big int"
            ]
        );
    }

    #[test]
    fn unsupported_storage_dtype_is_named() {
        let p = b"\x80\x02(X\x07\x00\x00\x00storagectorch\nComplexFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ.";
        let err = unpickle(p).err().unwrap();
        assert_eq!(
            err,
            PickleError::UnsupportedStorage {
                key: "0".into(),
                storage_type: "torch.ComplexFloatStorage".into()
            }
        );
    }
}
