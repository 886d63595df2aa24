//! The ResourceManager: the registry of TaskManagers, their slots and heartbeats.
//!
//! A pure state machine: registration, heartbeats, expiry and slot allocation are plain method
//! calls with the current time passed in; the jobmanager's async shell calls them from its RPC
//! handlers and its heartbeat monitor. Slots are allocated whole to a job (slot sharing: one
//! slot runs one parallel slice of the job's whole pipeline) and released when the job ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_engine::ids::{JobId, SlotId};

/// A TaskManager's identity as it chose it at start-up: the exchange's id type, so the
/// locations the JobMaster deploys name TaskManagers exactly as the exchange places them.
pub use sluice_flight::TaskManagerId;

/// A registered TaskManager.
#[derive(Debug, Clone)]
pub struct TaskManagerRecord {
    pub id: TaskManagerId,
    /// host:port of its TaskExecutor service.
    pub rpc_address: String,
    pub data_port: u32,
    /// Port of its sink-table Flight service (0: none).
    pub flight_port: u32,
    pub hostname: String,
    /// Its machine and its `/metrics` endpoint.
    pub hardware: Hardware,
    /// Which job holds each slot (`None`: free).
    pub slots: Vec<Option<JobId>>,
    pub registered_at: Instant,
    pub last_heartbeat: Instant,
    /// Wall-clock time of the last heartbeat, milliseconds since the Unix epoch.
    pub last_heartbeat_ms: u64,
    /// What its latest heartbeat reported about itself; `None` before the first.
    pub load: Option<TaskManagerLoad>,
}

/// A TaskManager's machine, as it reports at registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hardware {
    /// Port of its Prometheus `/metrics` endpoint (0: none).
    pub metrics_port: u32,
    pub cpu_cores: u32,
    pub physical_memory_bytes: u64,
}

/// What a TaskManager reports about itself in each heartbeat (totals since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskManagerMetrics {
    pub memory_rss_bytes: u64,
    pub network_bytes_sent: u64,
    pub network_bytes_received: u64,
    pub network_credit_stalls: u64,
}

/// A TaskManager's latest report and its network rates since the one before.
#[derive(Debug, Clone, Copy)]
pub struct TaskManagerLoad {
    pub latest: TaskManagerMetrics,
    pub at: Instant,
    pub bytes_sent_per_second: f64,
    pub bytes_received_per_second: f64,
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
    pub flight_port: u32,
    pub hostname: String,
    pub hardware: Hardware,
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
                flight_port: offer.flight_port,
                hostname: offer.hostname,
                hardware: offer.hardware,
                slots: vec![None; offer.slots],
                registered_at: now,
                last_heartbeat: now,
                last_heartbeat_ms: now_ms,
                load: None,
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

    /// Records what a heartbeat of a known TaskManager reported about it.
    pub fn record_load(&mut self, id: &TaskManagerId, metrics: TaskManagerMetrics, now: Instant) {
        let Some(record) = self.task_managers.get_mut(id) else {
            return;
        };
        let (sent, received) = match &record.load {
            Some(before) => {
                let seconds = now.saturating_duration_since(before.at).as_secs_f64();
                let rate = |a: u64, b: u64| {
                    if seconds > 0.0 {
                        a.saturating_sub(b) as f64 / seconds
                    } else {
                        0.0
                    }
                };
                (
                    rate(metrics.network_bytes_sent, before.latest.network_bytes_sent),
                    rate(
                        metrics.network_bytes_received,
                        before.latest.network_bytes_received,
                    ),
                )
            }
            None => (0.0, 0.0),
        };
        record.load = Some(TaskManagerLoad {
            latest: metrics,
            at: now,
            bytes_sent_per_second: sent,
            bytes_received_per_second: received,
        });
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

    /// Gives `job` `count` free slots, filling the TaskManagers with the most free slots
    /// first, so a job spans as few as possible (its slices exchange data through in-process
    /// queues where they share a TaskManager, through Flight where they do not).
    pub fn allocate(
        &mut self,
        job: &JobId,
        count: usize,
    ) -> Result<Vec<AllocatedSlot>, AllocationError> {
        let free = self.free_slots();
        if free < count {
            return Err(AllocationError::NotEnoughSlots {
                needed: count,
                free,
            });
        }
        let mut chosen: Vec<TaskManagerId> = self.task_managers.keys().cloned().collect();
        chosen.sort_by_key(|id| std::cmp::Reverse(self.task_managers[id].free_slots()));
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
                    flight_port: 0,
                    hostname: "localhost".into(),
                    hardware: Hardware::default(),
                    slots: n,
                },
                now,
                0,
            );
        }
        (rm, now)
    }

    #[test]
    fn allocation_fills_the_task_manager_with_most_free_slots_first_and_release_frees() {
        let (mut rm, _) = rm(&[2, 4]);
        let job = JobId("a".into());
        let slots = rm.allocate(&job, 3).unwrap();
        assert!(slots.iter().all(|s| s.task_manager.0 == "tm1"));
        let slot_numbers: Vec<u32> = slots.iter().map(|s| s.slot.0).collect();
        assert_eq!(slot_numbers, [0, 1, 2]);
        assert_eq!(rm.free_slots(), 3);
        let err = rm.allocate(&JobId("b".into()), 4).unwrap_err();
        assert_eq!(err, AllocationError::NotEnoughSlots { needed: 4, free: 3 });
        assert_eq!(rm.free_slots(), 3, "a failed allocation takes nothing");
        rm.release(&job);
        assert_eq!(rm.free_slots(), 6);
    }

    #[test]
    fn allocation_spans_task_managers_when_none_has_enough() {
        let (mut five, _) = rm(&[2, 3]);
        let slots = five.allocate(&JobId("a".into()), 4).unwrap();
        assert_eq!(
            slots.iter().filter(|s| s.task_manager.0 == "tm1").count(),
            3
        );
        assert_eq!(
            slots.iter().filter(|s| s.task_manager.0 == "tm0").count(),
            1
        );
        let (mut two, _) = rm(&[1, 1]);
        let slots = two.allocate(&JobId("a".into()), 2).unwrap();
        let mut hosts: Vec<&str> = slots.iter().map(|s| s.task_manager.0.as_str()).collect();
        hosts.sort_unstable();
        assert_eq!(hosts, ["tm0", "tm1"]);
        assert_eq!(two.free_slots(), 0);
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
