//! A criterion measurement that counts the instructions the calling thread retires in user
//! space (Linux perf events), instead of the time: a count does not move when another
//! process loads the machine, so a patched forward and its hand-written twin can be
//! compared to the instruction even on a shared VM. Used at one intra-op thread, where
//! libtorch runs every op on the calling thread.
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use perf_event::events::Hardware;
use perf_event::{Builder, Counter};
use std::cell::RefCell;

/// The instructions retired by this thread, in user space (kernel and hypervisor excluded).
pub(crate) struct Instructions {
    counter: RefCell<Counter>,
}

impl Instructions {
    /// An enabled counter, or why perf events cannot count here (no hardware counters in
    /// the VM, `perf_event_paranoid` too strict).
    pub(crate) fn new() -> std::io::Result<Self> {
        let mut counter = Builder::new().kind(Hardware::INSTRUCTIONS).build()?;
        counter.enable()?;
        Ok(Instructions {
            counter: RefCell::new(counter),
        })
    }

    fn read(&self) -> u64 {
        self.counter
            .borrow_mut()
            .read()
            .expect("reading an enabled perf counter")
    }
}

impl Measurement for Instructions {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        self.read()
    }

    fn end(&self, start: u64) -> u64 {
        self.read() - start
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &InstructionFormatter
    }
}

struct InstructionFormatter;

impl ValueFormatter for InstructionFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t >= 1e9 => (1e-9, "G instr"),
            t if t >= 1e6 => (1e-6, "M instr"),
            t if t >= 1e3 => (1e-3, "k instr"),
            _ => (1.0, "instr"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v = 0.0);
        "(no throughput)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "instructions"
    }
}
