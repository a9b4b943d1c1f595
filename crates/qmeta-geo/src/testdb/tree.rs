//! The MaxMind DB binary search tree: one level per address bit, two
//! records per node (bit 0 left, bit 1 right).

/// A trie node while building. `Data` holds an offset into the data section.
#[derive(Clone)]
enum Node {
    Empty,
    Data(usize),
    Split(Box<Node>, Box<Node>),
}

/// What a record points at, before node numbers are known.
#[derive(Clone, Copy)]
enum Rec {
    Node(usize),
    Empty,
    Data(usize),
}

pub(crate) struct Tree {
    root: Node,
    /// Address width in bits: 32 for IPv4-only trees, 128 otherwise.
    width: u32,
}

impl Tree {
    pub(crate) fn new(width: u32) -> Tree {
        Tree { root: Node::Empty, width }
    }

    /// Maps the `len`-bit prefix of `key` (a `width`-bit number) to `data`.
    /// A later insert wins over an earlier one wherever they overlap.
    pub(crate) fn insert(&mut self, key: u128, len: u32, data: usize) {
        let mut node = &mut self.root;
        for depth in 0..len {
            if !matches!(node, Node::Split(..)) {
                // Push the old value down into both halves; the new prefix
                // then overrides only its own half.
                let old = std::mem::replace(node, Node::Empty);
                *node = Node::Split(Box::new(old.clone()), Box::new(old));
            }
            let right = (key >> (self.width - 1 - depth)) & 1 == 1;
            node = match node {
                Node::Split(l, r) => {
                    if right {
                        r.as_mut()
                    } else {
                        l.as_mut()
                    }
                }
                _ => unreachable!("split just above"),
            };
        }
        *node = Node::Data(data);
    }

    /// Numbers the nodes breadth-first (root is node 0) and writes them
    /// with the smallest record size that fits (or `forced`).
    /// Returns (tree bytes, node count, record size).
    ///
    /// # Panics
    /// If `forced` is not 24, 28 or 32, or is too small for the records.
    pub(crate) fn serialize(&self, data_len: usize, forced: Option<u16>) -> (Vec<u8>, u32, u16) {
        // The format needs at least one node: a bare root becomes a node
        // whose two halves both hold it.
        let wrapped;
        let root = if matches!(self.root, Node::Split(..)) {
            &self.root
        } else {
            wrapped = Node::Split(Box::new(self.root.clone()), Box::new(self.root.clone()));
            &wrapped
        };
        let mut order: Vec<&Node> = vec![root];
        let mut recs: Vec<[Rec; 2]> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let Node::Split(l, r) = order[i] else { unreachable!("only splits are queued") };
            let mut pair = [Rec::Empty; 2];
            for (slot, child) in pair.iter_mut().zip([l, r]) {
                *slot = match child.as_ref() {
                    Node::Empty => Rec::Empty,
                    Node::Data(off) => Rec::Data(*off),
                    split => {
                        order.push(split);
                        Rec::Node(order.len() - 1)
                    }
                };
            }
            recs.push(pair);
            i += 1;
        }
        let node_count = recs.len();
        // Data records point past the 16-byte separator: value =
        // node_count + 16 + offset in the data section.
        let max_value = (node_count + 16 + data_len) as u64;
        let record_size = match forced {
            Some(size) => {
                assert!(matches!(size, 24 | 28 | 32), "record size must be 24, 28 or 32");
                assert!(max_value < 1 << size, "record size {size} too small");
                size
            }
            None => [24, 28, 32].into_iter().find(|&s| max_value < 1u64 << s).expect("test database larger than 4 GiB"),
        };
        let value = |r: Rec| -> u32 {
            let v = match r {
                Rec::Node(id) => id,
                Rec::Empty => node_count,
                Rec::Data(off) => node_count + 16 + off,
            };
            u32::try_from(v).expect("checked against the record size")
        };
        let mut out = Vec::with_capacity(node_count * usize::from(record_size) / 4);
        for [l, r] in recs {
            let (l, r) = (value(l), value(r));
            match record_size {
                24 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                28 => {
                    // [left low 24 bits][left high nibble | right high nibble][right low 24 bits]
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.push(((l >> 24) as u8) << 4 | (r >> 24) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                _ => {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
        }
        (out, node_count as u32, record_size)
    }
}
