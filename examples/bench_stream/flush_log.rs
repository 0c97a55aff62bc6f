//! The appender's own timing of each flush: captures its `flushed` tracing events (the timing
//! of each background or explicit flush: the data-file write plus the catalog commit, after the
//! rows' conversion to Arrow). Read only for reporting; when the library words it differently
//! nothing is captured and the figures print as n/a.

use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

#[derive(Debug, Clone, Copy)]
pub struct Flush {
    pub ms: u64,
    pub rows: u64,
}

static FLUSHES: Mutex<Vec<Flush>> = Mutex::new(Vec::new());

/// The flushes seen since the last call.
pub fn take() -> Vec<Flush> {
    std::mem::take(&mut *FLUSHES.lock().unwrap_or_else(|e| e.into_inner()))
}

#[derive(Default)]
struct Fields {
    flushed: bool,
    ms: Option<u64>,
    rows: u64,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "ms" => self.ms = Some(value),
            "rows" => self.rows = value,
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.flushed = value == "flushed";
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.flushed = format!("{value:?}") == "flushed";
        }
    }
}

pub struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("sales_history") {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let (true, Some(ms)) = (f.flushed, f.ms) {
            let flush = Flush { ms, rows: f.rows };
            FLUSHES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(flush);
        }
    }
}
