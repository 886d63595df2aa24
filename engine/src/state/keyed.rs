//! Keyed state for any operator, organised by key group.
//!
//! A [`KeyedStateBackend`] owns a [`KeyTable`] (row-encoded key bytes → dense [`KeyId`], with
//! each key's key group recorded) and named state tables created from descriptors:
//! [`ValueState`], [`ListState`], [`MapState`] for serde types, and [`ColumnState`], a
//! columnar accumulator (one native value per key id) for vectorized updates.
//!
//! Per batch an operator calls [`KeyedStateBackend::key_ids_for`] once: the key columns are
//! hashed (key groups) and row-encoded column by column, then interned, yielding one key id
//! per row. All state is then addressed by key id; there is no "current key" inside the
//! backend, so a whole batch is processed in one loop.
//!
//! Key ids are dense and never reused within a run: a key stays in the key table after its
//! state is cleared (it costs its encoded bytes plus ~20 bytes). A restore only re-interns keys
//! that still have state, which is where the table is compacted.
//!
//! **Snapshots** ([`KeyedStateBackend::snapshot`]) produce one Arrow table per state name with
//! the columns `key_group: UInt32`, `key: Binary` (the arrow-row encoding) and `value`: the
//! serde_json encoding as `Binary` for value, list and map state (a list is one JSON array per
//! key, a map one JSON array of `[k, v]` pairs per key), and the native Arrow type for
//! columnar state. [`KeyedStateBackend::restore`] keeps only the rows of owned key groups, so
//! a job can be restored at another parallelism.
//!
//! **Memory accounting** ([`KeyedStateBackend::state_bytes`]) is an approximation of heap
//! bytes: allocated capacity of the key table and of every state vector, plus for serde
//! types `size_of::<T>()` per element (heap data owned by a `T`, e.g. a `String`'s buffer, is
//! not counted). It is meant for trends and per-key estimates, not exact limits.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, PrimitiveArray, UInt32Array,
};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;
use serde::Serialize;
use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    ChangeTracker, KeyGroupOwnership, KeyGroupRange, SliceSelection, SliceSet, SnapshotTable,
    StateSnapshot, TouchedIds, hash_columns, key_group_of_hash, slices_of,
};
use crate::ids::CheckpointId;
use crate::{Error, Result};

/// The dense id of a key within one [`KeyedStateBackend`] (0, 1, 2, … in order of first
/// appearance). Only meaningful together with the backend that assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The id as an index into per-key vectors.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Row-encoded keys interned to dense ids. Key bytes live in one buffer.
#[derive(Debug, Default)]
pub struct KeyTable {
    table: HashTable<(u64, KeyId)>,
    key_bytes: Vec<u8>,
    key_offsets: Vec<usize>,
    key_groups: Vec<u32>,
}

impl KeyTable {
    /// Number of interned keys.
    pub fn len(&self) -> usize {
        self.key_offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_offsets.is_empty()
    }

    /// The arrow-row encoding of `key`.
    pub fn key(&self, key: KeyId) -> &[u8] {
        let start = self.key_offsets[key.index()];
        let end = self
            .key_offsets
            .get(key.index() + 1)
            .copied()
            .unwrap_or(self.key_bytes.len());
        &self.key_bytes[start..end]
    }

    /// The key group `key` belongs to.
    pub fn key_group(&self, key: KeyId) -> u32 {
        self.key_groups[key.index()]
    }

    /// Heap bytes held (capacity, not length).
    pub fn allocated_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<(u64, KeyId)>()
            + self.key_bytes.capacity()
            + self.key_offsets.capacity() * std::mem::size_of::<usize>()
            + self.key_groups.capacity() * std::mem::size_of::<u32>()
    }

    /// The id of `bytes`, added with `key_group` if new.
    pub fn intern(&mut self, bytes: &[u8], key_group: u32) -> KeyId {
        let hash = xxh3_64(bytes);
        let KeyTable {
            table,
            key_bytes,
            key_offsets,
            key_groups,
        } = self;
        let key_of = |k: KeyId| {
            let start = key_offsets[k.index()];
            let end = key_offsets
                .get(k.index() + 1)
                .copied()
                .unwrap_or(key_bytes.len());
            &key_bytes[start..end]
        };
        if let Some(&(_, id)) = table.find(hash, |&(h, k)| h == hash && key_of(k) == bytes) {
            return id;
        }
        let id = KeyId(key_offsets.len() as u32);
        key_offsets.push(key_bytes.len());
        key_bytes.extend_from_slice(bytes);
        key_groups.push(key_group);
        table.insert_unique(hash, (hash, id), |&(h, _)| h);
        id
    }
}

/// What every state table does, whatever its value type.
trait StateTable: Send {
    fn name(&self) -> &str;
    fn allocated_bytes(&self) -> usize;
    /// Key ids that hold state, ascending.
    fn keys_with_state(&self) -> Vec<KeyId>;
    /// The value column for `keys` (each of which holds state).
    fn values(&self, keys: &[KeyId]) -> Result<ArrayRef>;
    fn value_type(&self) -> DataType;
    /// Sets the state of `key` from row `row` of a snapshot's value column.
    fn restore_row(&mut self, key: KeyId, values: &dyn Array, row: usize) -> Result<()>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

fn serde_error(state: &str, action: &str, error: serde_json::Error) -> Error {
    Error::data(
        format!("keyed state '{state}'"),
        format!("{action}: {error}"),
    )
}

fn json_column<I, B>(state: &str, items: I) -> Result<ArrayRef>
where
    I: IntoIterator<Item = B>,
    B: Serialize,
{
    let mut builder = BinaryBuilder::new();
    for item in items {
        let bytes =
            serde_json::to_vec(&item).map_err(|e| serde_error(state, "serialise value", e))?;
        builder.append_value(bytes);
    }
    Ok(Arc::new(builder.finish()))
}

fn json_value<T: DeserializeOwned>(state: &str, values: &dyn Array, row: usize) -> Result<T> {
    let values = values.as_binary_opt::<i32>().ok_or_else(|| {
        Error::data(
            format!("keyed state '{state}'"),
            "value column is not Binary",
        )
    })?;
    serde_json::from_slice(values.value(row))
        .map_err(|e| serde_error(state, "deserialise value", e))
}

/// One value per key: `Vec<Option<T>>` indexed by key id.
struct ValueTable<T> {
    name: String,
    values: Vec<Option<T>>,
}

/// Values per key, in insertion order.
struct ListTable<T> {
    name: String,
    lists: Vec<Vec<T>>,
}

/// A sorted map per key (sparse: only keys with entries take space).
struct MapTable<K, V> {
    name: String,
    maps: hashbrown::HashMap<KeyId, BTreeMap<K, V>>,
}

/// A native column per key: `values[key id]`, `default` for keys never written.
struct ColumnTable<T: ArrowPrimitiveType> {
    name: String,
    values: Vec<T::Native>,
    default: T::Native,
}

impl<T> StateTable for ValueTable<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<T>>()
    }
    fn keys_with_state(&self) -> Vec<KeyId> {
        (0..self.values.len() as u32)
            .map(KeyId)
            .filter(|k| self.values[k.index()].is_some())
            .collect()
    }
    fn values(&self, keys: &[KeyId]) -> Result<ArrayRef> {
        json_column(&self.name, keys.iter().map(|k| &self.values[k.index()]))
    }
    fn value_type(&self) -> DataType {
        DataType::Binary
    }
    fn restore_row(&mut self, key: KeyId, values: &dyn Array, row: usize) -> Result<()> {
        let value: Option<T> = json_value(&self.name, values, row)?;
        if self.values.len() <= key.index() {
            self.values.resize(key.index() + 1, None);
        }
        self.values[key.index()] = value;
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T> StateTable for ListTable<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn allocated_bytes(&self) -> usize {
        self.lists.capacity() * std::mem::size_of::<Vec<T>>()
            + self
                .lists
                .iter()
                .map(|l| l.capacity() * std::mem::size_of::<T>())
                .sum::<usize>()
    }
    fn keys_with_state(&self) -> Vec<KeyId> {
        (0..self.lists.len() as u32)
            .map(KeyId)
            .filter(|k| !self.lists[k.index()].is_empty())
            .collect()
    }
    fn values(&self, keys: &[KeyId]) -> Result<ArrayRef> {
        json_column(&self.name, keys.iter().map(|k| &self.lists[k.index()]))
    }
    fn value_type(&self) -> DataType {
        DataType::Binary
    }
    fn restore_row(&mut self, key: KeyId, values: &dyn Array, row: usize) -> Result<()> {
        let list: Vec<T> = json_value(&self.name, values, row)?;
        if self.lists.len() <= key.index() {
            self.lists.resize_with(key.index() + 1, Vec::new);
        }
        self.lists[key.index()] = list;
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K, V> StateTable for MapTable<K, V>
where
    K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn allocated_bytes(&self) -> usize {
        self.maps.capacity() * std::mem::size_of::<(KeyId, BTreeMap<K, V>)>()
            + self
                .maps
                .values()
                .map(|m| m.len() * std::mem::size_of::<(K, V)>())
                .sum::<usize>()
    }
    fn keys_with_state(&self) -> Vec<KeyId> {
        let mut keys: Vec<KeyId> = self
            .maps
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(&k, _)| k)
            .collect();
        keys.sort_unstable();
        keys
    }
    fn values(&self, keys: &[KeyId]) -> Result<ArrayRef> {
        json_column(
            &self.name,
            keys.iter().map(|k| {
                self.maps
                    .get(k)
                    .map(|m| m.iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            }),
        )
    }
    fn value_type(&self) -> DataType {
        DataType::Binary
    }
    fn restore_row(&mut self, key: KeyId, values: &dyn Array, row: usize) -> Result<()> {
        let entries: Vec<(K, V)> = json_value(&self.name, values, row)?;
        self.maps.insert(key, entries.into_iter().collect());
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T: ArrowPrimitiveType> StateTable for ColumnTable<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>()
    }
    fn keys_with_state(&self) -> Vec<KeyId> {
        // Only values that differ from the default are state worth storing.
        (0..self.values.len() as u32)
            .map(KeyId)
            .filter(|k| self.values[k.index()] != self.default)
            .collect()
    }
    fn values(&self, keys: &[KeyId]) -> Result<ArrayRef> {
        Ok(Arc::new(PrimitiveArray::<T>::from_iter_values(
            keys.iter().map(|k| self.values[k.index()]),
        )))
    }
    fn value_type(&self) -> DataType {
        T::DATA_TYPE
    }
    fn restore_row(&mut self, key: KeyId, values: &dyn Array, row: usize) -> Result<()> {
        let values = values.as_primitive_opt::<T>().ok_or_else(|| {
            Error::data(
                format!("keyed state '{}'", self.name),
                format!("value column is not {}", T::DATA_TYPE),
            )
        })?;
        if self.values.len() <= key.index() {
            self.values.resize(key.index() + 1, self.default);
        }
        self.values[key.index()] = values.value(row);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident<$($p:ident),+>) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<$($p),+> {
            slot: usize,
            _type: PhantomData<fn() -> ($($p,)+)>,
        }
        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($p),+> Copy for $name<$($p),+> {}
    };
}

handle!(
    /// A handle to one value per key (Flink's `ValueState`), from
    /// [`KeyedStateBackend::value_state`].
    ValueState<T>
);
handle!(
    /// A handle to a list of values per key (Flink's `ListState`).
    ListState<T>
);
handle!(
    /// A handle to a sorted map per key (Flink's `MapState`).
    MapState<K, V>
);
handle!(
    /// A handle to a native column with one value per key, for vectorized accumulators:
    /// [`KeyedStateBackend::column_mut`] gives the whole column as a slice indexed by key id.
    ColumnState<T>
);

/// The schema of a snapshot table of state with values of `value_type`.
fn snapshot_schema(value_type: DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key_group", DataType::UInt32, false),
        Field::new("key", DataType::Binary, false),
        Field::new("value", value_type, true),
    ]))
}

/// Keyed state of one operator subtask. Lives on the slot thread; not shared.
pub struct KeyedStateBackend {
    keys: KeyTable,
    converter: RowConverter,
    max_parallelism: u32,
    key_groups: KeyGroupRange,
    states: Vec<Box<dyn StateTable>>,
    /// Incremental checkpoints ([`KeyedStateBackend::with_incremental_checkpoints`]): the
    /// slices changed since the last completed checkpoint, the keys whose state changed since
    /// the last snapshot, and whether a whole column was handed out for writing since then.
    changes: Option<ChangeTracker>,
    touched: TouchedIds,
    touched_all: bool,
    // Scratch reused across batches.
    hashes: Vec<u64>,
}

impl std::fmt::Debug for KeyedStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateBackend")
            .field("keys", &self.keys.len())
            .field("key_groups", &self.key_groups)
            .field(
                "states",
                &self.states.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Panics with a message naming the bug: a handle used with a backend that did not create it.
fn foreign_handle() -> ! {
    panic!("a keyed-state handle was used with a backend that did not create it (this is a bug)")
}

impl KeyedStateBackend {
    /// A backend for keys of `key_types` (in key-column order), owning `key_groups` of
    /// `max_parallelism`.
    pub fn try_new(
        key_types: &[DataType],
        max_parallelism: u32,
        key_groups: KeyGroupRange,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )
        .map_err(|e| Error::arrow("keyed state key encoding", e))?;
        Ok(KeyedStateBackend {
            keys: KeyTable::default(),
            converter,
            max_parallelism: max_parallelism.max(1),
            key_groups,
            states: Vec::new(),
            changes: None,
            touched: TouchedIds::default(),
            touched_all: false,
            hashes: Vec::new(),
        })
    }

    /// Tracks which keys change, so that [`KeyedStateBackend::snapshot_for`] leaves the
    /// key-group slices unchanged since the last completed checkpoint out.
    pub fn with_incremental_checkpoints(mut self, incremental: bool) -> Self {
        self.changes = incremental.then(|| {
            ChangeTracker::new(
                KeyGroupOwnership {
                    range: self.key_groups,
                    max_parallelism: self.max_parallelism,
                },
                true,
            )
        });
        self
    }

    /// Records that the state of `key` changed (incremental checkpoints only).
    #[inline]
    fn touch(&mut self, key: KeyId) {
        if self.changes.is_some() {
            self.touched.mark(key.0);
        }
    }

    /// The snapshot for checkpoint `checkpoint`: with incremental checkpoints only the rows of
    /// the key-group slices changed since the last completed checkpoint, the others marked as
    /// unchanged; else every row of the owned key groups.
    pub fn snapshot_for(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let Some(changes) = &mut self.changes else {
            return self.snapshot(self.key_groups);
        };
        let dirty = if std::mem::take(&mut self.touched_all) {
            self.touched.clear();
            let mut all = SliceSet::default();
            for slice in slices_of(self.key_groups, changes.slice_width()) {
                all.insert(slice);
            }
            all
        } else {
            let keys = &self.keys;
            self.touched
                .take_slices(changes, |key| keys.key_group(KeyId(key)))
        };
        let selection = changes.snapshot(checkpoint, dirty);
        self.snapshot_selected(self.key_groups, Some(&selection))
    }

    /// Checkpoint `checkpoint` completed (see [`ChangeTracker::notify_complete`]).
    pub fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        if let Some(changes) = &mut self.changes {
            changes.notify_complete(checkpoint);
        }
    }

    /// The key groups this backend owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The key table (key bytes and key groups by id).
    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    pub(crate) fn keys_mut(&mut self) -> &mut KeyTable {
        &mut self.keys
    }

    /// Interned keys (including keys whose state has been cleared).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Approximate heap bytes of the key table and all state (see the module docs).
    pub fn state_bytes(&self) -> usize {
        self.keys.allocated_bytes()
            + self.hashes.capacity() * std::mem::size_of::<u64>()
            + self
                .states
                .iter()
                .map(|s| s.allocated_bytes())
                .sum::<usize>()
    }

    /// Fills `out` with the key id of every row of the key columns `keys`: one hash pass and
    /// one row encoding per batch, then a table probe per row. Errors if a row's key group is
    /// not owned by this backend (a misrouted row).
    pub fn key_ids_for(&mut self, keys: &[ArrayRef], out: &mut Vec<KeyId>) -> Result<()> {
        hash_columns(keys, &mut self.hashes)?;
        let rows = self
            .converter
            .convert_columns(keys)
            .map_err(|e| Error::arrow("keyed state key encoding", e))?;
        out.clear();
        out.reserve(rows.num_rows());
        for (row, &hash) in rows.iter().zip(&self.hashes) {
            let key_group = key_group_of_hash(hash, self.max_parallelism);
            if !self.key_groups.contains(key_group) {
                return Err(Error::Internal(format!(
                    "a row of key group {key_group} reached a subtask owning {:?}",
                    self.key_groups
                )));
            }
            out.push(self.keys.intern(row.as_ref(), key_group));
        }
        Ok(())
    }

    /// Decodes `keys` back into key columns (e.g. to emit keys from a timer callback).
    pub fn key_columns(&self, keys: &[KeyId]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        self.converter
            .convert_rows(keys.iter().map(|&k| parser.parse(self.keys.key(k))))
            .map_err(|e| Error::arrow("keyed state key decoding", e))
    }

    fn register(&mut self, table: Box<dyn StateTable>) -> Result<usize> {
        if self.states.iter().any(|s| s.name() == table.name()) {
            return Err(Error::plan(
                table.name(),
                "a keyed state with this name is already registered",
            ));
        }
        self.states.push(table);
        Ok(self.states.len() - 1)
    }

    /// Registers value state `name`. Names are unique within a backend.
    pub fn value_state<T>(&mut self, name: &str) -> Result<ValueState<T>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let slot = self.register(Box::new(ValueTable::<T> {
            name: name.to_string(),
            values: Vec::new(),
        }))?;
        Ok(ValueState {
            slot,
            _type: PhantomData,
        })
    }

    /// Registers list state `name`.
    pub fn list_state<T>(&mut self, name: &str) -> Result<ListState<T>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let slot = self.register(Box::new(ListTable::<T> {
            name: name.to_string(),
            lists: Vec::new(),
        }))?;
        Ok(ListState {
            slot,
            _type: PhantomData,
        })
    }

    /// Registers map state `name`.
    pub fn map_state<K, V>(&mut self, name: &str) -> Result<MapState<K, V>>
    where
        K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let slot = self.register(Box::new(MapTable::<K, V> {
            name: name.to_string(),
            maps: hashbrown::HashMap::new(),
        }))?;
        Ok(MapState {
            slot,
            _type: PhantomData,
        })
    }

    /// Registers columnar state `name` whose keys start at `default`.
    pub fn column_state<T: ArrowPrimitiveType>(
        &mut self,
        name: &str,
        default: T::Native,
    ) -> Result<ColumnState<T>> {
        let slot = self.register(Box::new(ColumnTable::<T> {
            name: name.to_string(),
            values: Vec::new(),
            default,
        }))?;
        Ok(ColumnState {
            slot,
            _type: PhantomData,
        })
    }

    fn table<S: 'static>(&self, slot: usize) -> &S {
        self.states
            .get(slot)
            .and_then(|s| s.as_any().downcast_ref::<S>())
            .unwrap_or_else(|| foreign_handle())
    }

    fn table_mut<S: 'static>(&mut self, slot: usize) -> &mut S {
        self.states
            .get_mut(slot)
            .and_then(|s| s.as_any_mut().downcast_mut::<S>())
            .unwrap_or_else(|| foreign_handle())
    }

    /// The value of `key`, if set.
    ///
    /// # Panics
    /// If `state` was created by another backend (as do all state accessors).
    pub fn value<T>(&self, state: &ValueState<T>, key: KeyId) -> Option<&T>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.table::<ValueTable<T>>(state.slot)
            .values
            .get(key.index())
            .and_then(Option::as_ref)
    }

    /// Sets the value of `key`.
    pub fn set_value<T>(&mut self, state: &ValueState<T>, key: KeyId, value: T)
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let values = &mut self.table_mut::<ValueTable<T>>(state.slot).values;
        if values.len() <= key.index() {
            values.resize(key.index() + 1, None);
        }
        values[key.index()] = Some(value);
        self.touch(key);
    }

    /// Clears the value of `key`, returning it.
    pub fn clear_value<T>(&mut self, state: &ValueState<T>, key: KeyId) -> Option<T>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.touch(key);
        self.table_mut::<ValueTable<T>>(state.slot)
            .values
            .get_mut(key.index())
            .and_then(Option::take)
    }

    /// The list of `key` (empty if none).
    pub fn list<T>(&self, state: &ListState<T>, key: KeyId) -> &[T]
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.table::<ListTable<T>>(state.slot)
            .lists
            .get(key.index())
            .map_or(&[], Vec::as_slice)
    }

    /// Appends `value` to the list of `key`.
    pub fn add_to_list<T>(&mut self, state: &ListState<T>, key: KeyId, value: T)
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        let lists = &mut self.table_mut::<ListTable<T>>(state.slot).lists;
        if lists.len() <= key.index() {
            lists.resize_with(key.index() + 1, Vec::new);
        }
        lists[key.index()].push(value);
        self.touch(key);
    }

    /// Removes and returns the list of `key`.
    pub fn take_list<T>(&mut self, state: &ListState<T>, key: KeyId) -> Vec<T>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.touch(key);
        self.table_mut::<ListTable<T>>(state.slot)
            .lists
            .get_mut(key.index())
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The map of `key`, if it has entries.
    pub fn map<K, V>(&self, state: &MapState<K, V>, key: KeyId) -> Option<&BTreeMap<K, V>>
    where
        K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.table::<MapTable<K, V>>(state.slot).maps.get(&key)
    }

    /// The map of `key` for writing (created empty if absent).
    pub fn map_mut<K, V>(&mut self, state: &MapState<K, V>, key: KeyId) -> &mut BTreeMap<K, V>
    where
        K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.touch(key);
        self.table_mut::<MapTable<K, V>>(state.slot)
            .maps
            .entry(key)
            .or_default()
    }

    /// Removes the map of `key`.
    pub fn clear_map<K, V>(&mut self, state: &MapState<K, V>, key: KeyId)
    where
        K: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
        V: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.touch(key);
        self.table_mut::<MapTable<K, V>>(state.slot)
            .maps
            .remove(&key);
    }

    /// The whole column, one value per interned key (new keys hold the default), for
    /// vectorized updates: `for (row, k) in ids.iter().enumerate() { col[k.index()] += v[row] }`.
    pub fn column_mut<T: ArrowPrimitiveType>(
        &mut self,
        state: &ColumnState<T>,
    ) -> &mut [T::Native] {
        let keys = self.keys.len();
        // Any key may change through the column.
        self.touched_all = self.changes.is_some();
        let table = self.table_mut::<ColumnTable<T>>(state.slot);
        if table.values.len() < keys {
            table.values.resize(keys, table.default);
        }
        &mut table.values
    }

    /// The column for reading; may be shorter than the key count (missing keys hold the
    /// default).
    pub fn column<T: ArrowPrimitiveType>(&self, state: &ColumnState<T>) -> &[T::Native] {
        &self.table::<ColumnTable<T>>(state.slot).values
    }

    /// One table per state, named after it, holding the keys of `range` that have state,
    /// in key-id order.
    pub fn snapshot(&self, range: KeyGroupRange) -> Result<StateSnapshot> {
        self.snapshot_selected(range, None)
    }

    /// [`KeyedStateBackend::snapshot`] of the keys in `range` whose slice `selection`
    /// includes (all without a selection).
    fn snapshot_selected(
        &self,
        range: KeyGroupRange,
        selection: Option<&SliceSelection>,
    ) -> Result<StateSnapshot> {
        let mut tables = Vec::with_capacity(self.states.len());
        for state in &self.states {
            let keys: Vec<KeyId> = state
                .keys_with_state()
                .into_iter()
                .filter(|&k| {
                    let key_group = self.keys.key_group(k);
                    range.contains(key_group) && selection.is_none_or(|s| s.includes(key_group))
                })
                .collect();
            let key_groups =
                UInt32Array::from_iter_values(keys.iter().map(|&k| self.keys.key_group(k)));
            let key_bytes = BinaryArray::from_iter_values(keys.iter().map(|&k| self.keys.key(k)));
            let values = state.values(&keys)?;
            let batch = RecordBatch::try_new(
                snapshot_schema(state.value_type()),
                vec![Arc::new(key_groups), Arc::new(key_bytes), values],
            )
            .map_err(|e| Error::arrow(format!("snapshot of keyed state '{}'", state.name()), e))?;
            tables.push(SnapshotTable {
                slices: selection.and_then(SliceSelection::table_slices),
                name: state.name().to_string(),
                batches: vec![batch],
            });
        }
        Ok(StateSnapshot {
            key_groups: Some(range),
            tables,
            sink_pre_commit: None,
        })
    }

    /// Loads the rows of `snapshot` whose key group lies in `owned` (the backend's own range
    /// is left unchanged). Every state table must be registered first; tables that are not
    /// keyed state of this backend (e.g. `timers`) are skipped.
    pub fn restore(&mut self, snapshot: &StateSnapshot, owned: KeyGroupRange) -> Result<()> {
        if let Some(changes) = &mut self.changes {
            changes.reset();
        }
        self.touched.clear();
        for table in &snapshot.tables {
            let Some(slot) = self.states.iter().position(|s| s.name() == table.name) else {
                continue;
            };
            for batch in &table.batches {
                let (key_groups, keys, values) = snapshot_columns(&table.name, batch)?;
                for row in 0..batch.num_rows() {
                    let key_group = key_groups.value(row);
                    if !owned.contains(key_group) {
                        continue;
                    }
                    let key = self.keys.intern(keys.value(row), key_group);
                    self.states[slot].restore_row(key, values.as_ref(), row)?;
                }
            }
        }
        Ok(())
    }
}

/// The `key_group`, `key` and value columns of a keyed snapshot table.
pub(crate) fn snapshot_columns<'a>(
    table: &str,
    batch: &'a RecordBatch,
) -> Result<(&'a UInt32Array, &'a BinaryArray, ArrayRef)> {
    let bad = || {
        Error::data(
            format!("snapshot table '{table}'"),
            "expected columns key_group: UInt32, key: Binary, value",
        )
    };
    if batch.num_columns() < 3 {
        return Err(bad());
    }
    let key_groups = batch.column(0).as_primitive_opt().ok_or_else(bad)?;
    let keys = batch.column(1).as_binary_opt::<i32>().ok_or_else(bad)?;
    Ok((key_groups, keys, batch.column(2).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Int64Type;

    fn backend(range: KeyGroupRange) -> KeyedStateBackend {
        KeyedStateBackend::try_new(&[DataType::Int64], 128, range).unwrap()
    }

    fn ids(backend: &mut KeyedStateBackend, keys: Vec<i64>) -> Vec<KeyId> {
        let column: ArrayRef = Arc::new(Int64Array::from(keys));
        let mut out = Vec::new();
        backend.key_ids_for(&[column], &mut out).unwrap();
        out
    }

    #[test]
    fn equal_keys_get_equal_dense_ids() {
        let mut b = backend(KeyGroupRange { start: 0, end: 128 });
        assert_eq!(
            ids(&mut b, vec![7, 3, 7, 9, 3]),
            vec![KeyId(0), KeyId(1), KeyId(0), KeyId(2), KeyId(1)]
        );
        assert_eq!(b.key_count(), 3);
        let decoded = b.key_columns(&[KeyId(2), KeyId(0)]).unwrap();
        assert_eq!(
            decoded[0].as_primitive::<Int64Type>().values().as_ref(),
            &[9, 7]
        );
    }

    #[test]
    fn value_list_map_and_column_state_by_key_id() {
        let mut b = backend(KeyGroupRange { start: 0, end: 128 });
        let value = b.value_state::<String>("v").unwrap();
        let list = b.list_state::<i64>("l").unwrap();
        let map = b.map_state::<String, f64>("m").unwrap();
        let column = b.column_state::<Int64Type>("c", 0).unwrap();
        assert!(b.value_state::<i64>("v").is_err(), "duplicate name");
        let keys = ids(&mut b, vec![1, 2, 1]);
        for (row, &k) in keys.iter().enumerate() {
            b.set_value(&value, k, format!("row {row}"));
            b.add_to_list(&list, k, row as i64);
            b.map_mut(&map, k).insert(format!("r{row}"), row as f64);
        }
        let sums = b.column_mut(&column);
        for (row, k) in keys.iter().enumerate() {
            sums[k.index()] += row as i64 + 1;
        }
        assert_eq!(b.value(&value, keys[0]).map(String::as_str), Some("row 2"));
        assert_eq!(b.list(&list, keys[0]), &[0, 2]);
        assert_eq!(b.map(&map, keys[1]).map(BTreeMap::len), Some(1));
        assert_eq!(b.column(&column), &[4, 2]);
        assert_eq!(b.clear_value(&value, keys[1]).as_deref(), Some("row 1"));
        assert_eq!(b.value(&value, keys[1]), None);
        assert!(b.state_bytes() > 0);
    }

    #[test]
    fn incremental_snapshots_hold_only_changed_slices() {
        let full = KeyGroupRange { start: 0, end: 128 };
        let mut b = backend(full).with_incremental_checkpoints(true);
        let value = b.value_state::<i64>("v").unwrap();
        let keys: Vec<i64> = (0..1000).collect();
        let key_ids = ids(&mut b, keys.clone());
        for (&k, &id) in keys.iter().zip(&key_ids) {
            b.set_value(&value, id, k);
        }
        let rows = |s: &StateSnapshot| s.tables[0].batches[0].num_rows();
        let first = b.snapshot_for(CheckpointId(1)).unwrap();
        assert_eq!(rows(&first), 1000);
        assert_eq!(first.tables[0].slices.as_ref().unwrap().base, None);
        b.notify_checkpoint_complete(CheckpointId(1));
        // One key changes: only the keys of its key group are written, the rest referenced.
        b.set_value(&value, key_ids[7], 70);
        let second = b.snapshot_for(CheckpointId(2)).unwrap();
        let slices = second.tables[0].slices.clone().unwrap();
        assert_eq!(slices.base, Some(CheckpointId(1)));
        assert_eq!(slices.unchanged.len(), 127);
        let written = rows(&second);
        assert!((1..30).contains(&written), "{written} rows");
        b.notify_checkpoint_complete(CheckpointId(2));
        // Nothing changed: nothing written.
        assert_eq!(rows(&b.snapshot_for(CheckpointId(3)).unwrap()), 0);
        // A column handed out for writing may change any key.
        let column = b.column_state::<Int64Type>("c", 0).unwrap();
        b.column_mut(&column)[0] = 1;
        let fourth = b.snapshot_for(CheckpointId(4)).unwrap();
        assert_eq!(rows(&fourth), 1000);
        assert!(
            fourth.tables[0]
                .slices
                .as_ref()
                .unwrap()
                .unchanged
                .is_empty()
        );
    }

    #[test]
    fn restore_into_a_split_range_keeps_exactly_the_owned_keys() {
        let full = KeyGroupRange { start: 0, end: 128 };
        let mut b = backend(full);
        let value = b.value_state::<i64>("v").unwrap();
        let list = b.list_state::<String>("l").unwrap();
        let column = b.column_state::<Int64Type>("c", 0).unwrap();
        let keys: Vec<i64> = (0..1000).collect();
        let key_ids = ids(&mut b, keys.clone());
        for (&k, &id) in keys.iter().zip(&key_ids) {
            b.set_value(&value, id, k * 10);
            b.add_to_list(&list, id, format!("{k}"));
        }
        let col = b.column_mut(&column);
        for (&k, &id) in keys.iter().zip(&key_ids) {
            col[id.index()] = k + 1;
        }
        let snapshot = b.snapshot(full).unwrap();
        assert_eq!(snapshot.tables.len(), 3);

        let mut restored_total = 0;
        for subtask in 0..3 {
            let range = KeyGroupRange::for_subtask(128, 3, subtask);
            let mut part = backend(range);
            let value2 = part.value_state::<i64>("v").unwrap();
            let list2 = part.list_state::<String>("l").unwrap();
            let column2 = part.column_state::<Int64Type>("c", 0).unwrap();
            part.restore(&snapshot, range).unwrap();
            // Exactly the keys whose key group is owned, each with its state.
            let owned: Vec<i64> = keys
                .iter()
                .copied()
                .filter(|&k| {
                    let mut h = Vec::new();
                    hash_columns(&[Arc::new(Int64Array::from(vec![k])) as ArrayRef], &mut h)
                        .unwrap();
                    range.contains(key_group_of_hash(h[0], 128))
                })
                .collect();
            assert_eq!(part.key_count(), owned.len());
            let owned_ids = ids(&mut part, owned.clone());
            assert_eq!(part.key_count(), owned.len(), "no new keys");
            for (&k, &id) in owned.iter().zip(&owned_ids) {
                assert_eq!(part.value(&value2, id), Some(&(k * 10)));
                assert_eq!(part.list(&list2, id), &[format!("{k}")]);
                assert_eq!(part.column(&column2)[id.index()], k + 1);
            }
            restored_total += part.key_count();
        }
        assert_eq!(restored_total, keys.len());
    }

    #[test]
    fn a_misrouted_row_is_an_internal_error() {
        let mut b = backend(KeyGroupRange { start: 0, end: 1 });
        let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let error = b.key_ids_for(&[column], &mut Vec::new()).unwrap_err();
        assert!(matches!(error, Error::Internal(_)), "{error}");
    }

    /// Measures state bytes per key for a million keys of `ValueState<i64>`:
    /// `cargo test -p sluice-engine --lib state_bytes_per_key -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, prints a number"]
    fn state_bytes_per_key_for_a_million_value_keys() {
        let mut b = backend(KeyGroupRange { start: 0, end: 128 });
        let value = b.value_state::<i64>("v").unwrap();
        let mut key_ids = Vec::new();
        for start in (0..1_000_000i64).step_by(8192) {
            let column: ArrayRef = Arc::new(Int64Array::from_iter_values(
                start..(start + 8192).min(1_000_000),
            ));
            b.key_ids_for(&[column], &mut key_ids).unwrap();
            for &k in &key_ids {
                b.set_value(&value, k, 1);
            }
        }
        assert_eq!(b.key_count(), 1_000_000);
        println!(
            "state bytes per key (1 M keys, ValueState<i64>): {:.1}",
            b.state_bytes() as f64 / 1e6
        );
    }
}
