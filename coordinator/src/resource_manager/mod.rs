//! The ResourceManager: the registry of TaskManagers, their slots and heartbeats.
//!
//! A pure state machine: registration, heartbeats, expiry and slot allocation are plain method
//! calls with the current time passed in; the jobmanager's async shell calls them from its RPC
//! handlers and its heartbeat monitor. Slots are allocated whole to a job (slot sharing: one
//! slot runs one parallel slice of the job's whole pipeline) and released when the job ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_engine::ids::{JobId, SlotId};

/// A TaskManager's identity as it chose it at start-up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskManagerId(pub String);

impl std::fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered TaskManager.
#[derive(Debug, Clone)]
pub struct TaskManagerRecord {
    pub id: TaskManagerId,
    /// host:port of its TaskExecutor service.
    pub rpc_address: String,
    pub data_port: u32,
    pub hostname: String,
    /// Which job holds each slot (`None`: free).
    pub slots: Vec<Option<JobId>>,
    pub registered_at: Instant,
    pub last_heartbeat: Instant,
    /// Wall-clock time of the last heartbeat, milliseconds since the Unix epoch.
    pub last_heartbeat_ms: u64,
}

impl TaskManagerRecord {
    pub fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }
}

/// A registering TaskManager and the slots it offers.
#[derive(Debug, Clone)]
pub struct SlotOffer {
    pub id: TaskManagerId,
    /// host:port of its TaskExecutor service.
    pub rpc_address: String,
    pub data_port: u32,
    pub hostname: String,
    pub slots: usize,
}

/// One slot given to a job: which TaskManager, which of its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedSlot {
    pub task_manager: TaskManagerId,
    pub slot: SlotId,
}

/// Why slots could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("the job needs {needed} slots but the cluster has {free} free")]
    NotEnoughSlots { needed: usize, free: usize },
    #[error(
        "the job needs {needed} slots on one TaskManager (its tasks exchange data, and \
         exchanges between TaskManagers need the Flight exchange) but the most any has free \
         is {largest}"
    )]
    NotEnoughSlotsOnOneTaskManager { needed: usize, largest: usize },
}

#[derive(Debug, Default)]
pub struct ResourceManager {
    task_managers: BTreeMap<TaskManagerId, TaskManagerRecord>,
}

impl ResourceManager {
    /// Registers (or re-registers) a TaskManager with all its slots free.
    pub fn register(&mut self, offer: SlotOffer, now: Instant, now_ms: u64) {
        self.task_managers.insert(
            offer.id.clone(),
            TaskManagerRecord {
                id: offer.id,
                rpc_address: offer.rpc_address,
                data_port: offer.data_port,
                hostname: offer.hostname,
                slots: vec![None; offer.slots],
                registered_at: now,
                last_heartbeat: now,
                last_heartbeat_ms: now_ms,
            },
        );
    }

    /// Records a heartbeat; `false` when the TaskManager is unknown (it must register again).
    pub fn heartbeat(&mut self, id: &TaskManagerId, now: Instant, now_ms: u64) -> bool {
        match self.task_managers.get_mut(id) {
            Some(record) => {
                record.last_heartbeat = now;
                record.last_heartbeat_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Removes a TaskManager; returns its record if it was registered.
    pub fn remove(&mut self, id: &TaskManagerId) -> Option<TaskManagerRecord> {
        self.task_managers.remove(id)
    }

    /// Removes every TaskManager whose last heartbeat is older than `timeout` and returns them.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<TaskManagerRecord> {
        let lost: Vec<TaskManagerId> = self
            .task_managers
            .values()
            .filter(|r| now.saturating_duration_since(r.last_heartbeat) > timeout)
            .map(|r| r.id.clone())
            .collect();
        lost.iter()
            .filter_map(|id| self.task_managers.remove(id))
            .collect()
    }

    pub fn task_managers(&self) -> impl Iterator<Item = &TaskManagerRecord> {
        self.task_managers.values()
    }

    pub fn get(&self, id: &TaskManagerId) -> Option<&TaskManagerRecord> {
        self.task_managers.get(id)
    }

    pub fn total_slots(&self) -> usize {
        self.task_managers.values().map(|r| r.slots.len()).sum()
    }

    pub fn free_slots(&self) -> usize {
        self.task_managers
            .values()
            .map(TaskManagerRecord::free_slots)
            .sum()
    }

    /// Gives `job` `count` free slots. With `one_task_manager`, all from one TaskManager (the
    /// one with the fewest free slots that suffices, keeping large ones for large jobs);
    /// otherwise filling the TaskManagers with the most free slots first, so a job spans as
    /// few as possible.
    pub fn allocate(
        &mut self,
        job: &JobId,
        count: usize,
        one_task_manager: bool,
    ) -> Result<Vec<AllocatedSlot>, AllocationError> {
        let free = self.free_slots();
        if free < count {
            return Err(AllocationError::NotEnoughSlots {
                needed: count,
                free,
            });
        }
        let mut order: Vec<&TaskManagerId> = self.task_managers.keys().collect();
        let chosen: Vec<TaskManagerId> = if one_task_manager {
            let best = self
                .task_managers
                .values()
                .filter(|r| r.free_slots() >= count)
                .min_by_key(|r| (r.free_slots(), r.id.clone()));
            match best {
                Some(record) => vec![record.id.clone()],
                None => {
                    let largest = self
                        .task_managers
                        .values()
                        .map(TaskManagerRecord::free_slots)
                        .max()
                        .unwrap_or(0);
                    return Err(AllocationError::NotEnoughSlotsOnOneTaskManager {
                        needed: count,
                        largest,
                    });
                }
            }
        } else {
            order.sort_by_key(|id| std::cmp::Reverse(self.task_managers[*id].free_slots()));
            order.into_iter().cloned().collect()
        };
        let mut allocated = Vec::with_capacity(count);
        for id in chosen {
            let record = self
                .task_managers
                .get_mut(&id)
                .expect("chosen from the registered TaskManagers");
            for (index, slot) in record.slots.iter_mut().enumerate() {
                if allocated.len() == count {
                    break;
                }
                if slot.is_none() {
                    *slot = Some(job.clone());
                    allocated.push(AllocatedSlot {
                        task_manager: id.clone(),
                        slot: SlotId(index as u32),
                    });
                }
            }
        }
        Ok(allocated)
    }

    /// Frees every slot `job` holds.
    pub fn release(&mut self, job: &JobId) {
        for record in self.task_managers.values_mut() {
            for slot in &mut record.slots {
                if slot.as_ref() == Some(job) {
                    *slot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rm(slots: &[usize]) -> (ResourceManager, Instant) {
        let mut rm = ResourceManager::default();
        let now = Instant::now();
        for (i, &n) in slots.iter().enumerate() {
            rm.register(
                SlotOffer {
                    id: TaskManagerId(format!("tm{i}")),
                    rpc_address: format!("127.0.0.1:{}", 7000 + i),
                    data_port: 0,
                    hostname: "localhost".into(),
                    slots: n,
                },
                now,
                0,
            );
        }
        (rm, now)
    }

    #[test]
    fn allocation_on_one_task_manager_picks_the_tightest_fit() {
        let (mut rm, _) = rm(&[4, 2]);
        let job = JobId("a".into());
        let slots = rm.allocate(&job, 2, true).unwrap();
        assert!(slots.iter().all(|s| s.task_manager.0 == "tm1"));
        assert_eq!(rm.free_slots(), 4);
        let err = rm.allocate(&JobId("b".into()), 5, true).unwrap_err();
        assert_eq!(err, AllocationError::NotEnoughSlots { needed: 5, free: 4 });
        rm.release(&job);
        assert_eq!(rm.free_slots(), 6);
    }

    #[test]
    fn allocation_spanning_task_managers_fills_the_largest_first() {
        let (mut rm, _) = rm(&[2, 3]);
        let slots = rm.allocate(&JobId("a".into()), 4, false).unwrap();
        assert_eq!(
            slots.iter().filter(|s| s.task_manager.0 == "tm1").count(),
            3
        );
        assert_eq!(
            slots.iter().filter(|s| s.task_manager.0 == "tm0").count(),
            1
        );
        let err = rm.allocate(&JobId("b".into()), 2, true).unwrap_err();
        assert_eq!(err, AllocationError::NotEnoughSlots { needed: 2, free: 1 });
    }

    #[test]
    fn one_task_manager_allocation_fails_when_slots_are_spread() {
        let (mut rm, _) = rm(&[2, 2]);
        let err = rm.allocate(&JobId("a".into()), 3, true).unwrap_err();
        assert_eq!(
            err,
            AllocationError::NotEnoughSlotsOnOneTaskManager {
                needed: 3,
                largest: 2
            }
        );
        assert_eq!(rm.free_slots(), 4, "a failed allocation takes nothing");
    }

    #[test]
    fn silent_task_managers_expire_and_must_register_again() {
        let (mut rm, start) = rm(&[1, 1]);
        let timeout = Duration::from_secs(5);
        let later = start + Duration::from_secs(4);
        assert!(rm.heartbeat(&TaskManagerId("tm0".into()), later, 0));
        let lost = rm.expire(start + Duration::from_secs(6), timeout);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].id.0, "tm1");
        assert!(!rm.heartbeat(&TaskManagerId("tm1".into()), later, 0));
        assert_eq!(rm.total_slots(), 1);
    }
}
