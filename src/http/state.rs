//! What every handler shares: the config, the graph once loaded, and the server's phase.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::config::Config;
use crate::graph::loader::RunningGraph;
use crate::telemetry::metrics::ServerMetrics;
use crate::telemetry::otlp::OtlpExporter;
use crate::telemetry::traces::{Trace, TraceStore};

use super::error::ApiError;

/// Where the server is in its life; `/readyz` is 200 only in `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Loading = 0,
    Ready = 1,
    ShuttingDown = 2,
    Failed = 3,
}

pub struct AppState {
    pub config: Config,
    /// Set once, when every model is loaded and its actor started.
    graph: OnceLock<RunningGraph>,
    /// A `Phase`, shared by all HTTP workers.
    phase: AtomicU8,
    /// Why start-up failed, for `serve` to report once the server has stopped.
    failure: OnceLock<String>,
    /// What `/metrics` reports besides the engines' own counters.
    pub metrics: ServerMetrics,
    /// The last graph requests' traces.
    pub traces: TraceStore,
    /// Where traces are also sent, when `[otlp] endpoint` is set.
    pub otlp: Option<OtlpExporter>,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        Self {
            graph: OnceLock::new(),
            phase: AtomicU8::new(Phase::Loading as u8),
            failure: OnceLock::new(),
            metrics: ServerMetrics::default(),
            traces: TraceStore::new(config.server.traces_kept),
            otlp: None,
            config,
        }
    }

    /// Also sends every trace to an OTLP collector.
    pub fn with_exporter(mut self, exporter: OtlpExporter) -> Self {
        self.otlp = Some(exporter);
        self
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Loading,
            1 => Phase::Ready,
            2 => Phase::ShuttingDown,
            _ => Phase::Failed,
        }
    }

    /// Publishes the loaded graph; a shutdown that began during loading stays in force.
    pub fn set_ready(&self, graph: RunningGraph) {
        let _ = self.graph.set(graph);
        let _ = self.phase.compare_exchange(
            Phase::Loading as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Marks start-up as failed with `reason`.
    pub fn set_failed(&self, reason: String) {
        let _ = self.failure.set(reason);
        self.set_phase(Phase::Failed);
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    pub fn graph(&self) -> Option<&RunningGraph> {
        self.graph.get()
    }

    /// The graph, if the server is ready for work: 503 while loading or draining.
    pub fn ready_graph(&self) -> Result<&RunningGraph, ApiError> {
        match self.phase() {
            Phase::ShuttingDown => Err(ApiError::ShuttingDown),
            Phase::Ready => Ok(self.graph().expect("ready means a graph")),
            Phase::Loading | Phase::Failed => Err(ApiError::NotReady),
        }
    }

    /// Keeps `trace` for `GET /v1/traces` (and exports it, with OTLP on); returns its id.
    pub fn record_trace(&self, trace: Trace) -> String {
        let trace = std::sync::Arc::new(trace);
        let trace_id = trace.trace_id.clone();
        if let Some(exporter) = &self.otlp {
            exporter.export(trace.clone());
        }
        self.traces.record(trace);
        trace_id
    }
}
