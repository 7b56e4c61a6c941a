//! Starting and stopping the telemetry pipeline.
//!
//! [`init`] is synchronous and needs no async runtime in the caller: it starts one background thread,
//! `oclayer-export`, running a current-thread tokio runtime that hosts the span batcher, the stats
//! reporting loop and the exporters' network tasks and servers. Nothing on the request path ever waits for
//! that thread.
//!
//! One pipeline runs per process. [`Telemetry`] is its handle: [`Telemetry::flush`] delivers what is queued,
//! [`Telemetry::shutdown`] switches the layers off, delivers what is queued, stops the exporters and joins
//! the thread. Both return plain futures that work on any executor, including a current-thread tokio
//! runtime. Dropping the handle without shutting down stops the pipeline without waiting for it; after
//! either, `init` may be called again.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, EnabledLayers};
use crate::export::{self, Exporter};
use crate::trace::pipeline::{self, Batcher, SpanSink};
use crate::trace::{self, Sampler};
use crate::{Error, layer, stats};

/// How long [`Telemetry::flush`] and [`Telemetry::shutdown`] may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set while a pipeline runs: one per process.
static LIVE: AtomicBool = AtomicBool::new(false);

/// Starts the telemetry pipeline from `config` with the exporters it names.
///
/// Fails if `config` is invalid (its fields were changed to values [`Config::validate`] refuses), if a
/// pipeline is already running, if there is no exporter at all ([`Error::Config`] at `exporters`), if an
/// exporter cannot start (e.g. its port is taken), or if the background thread cannot be created.
pub fn init(config: Config) -> Result<Telemetry, Error> {
    Telemetry::builder(config).init()
}

/// Reads KrakenD's config file (a whole `krakend.json` or just the `telemetry/opencensus` block) and
/// starts the pipeline from it; see [`init`].
pub fn init_from_file(path: impl AsRef<Path>) -> Result<Telemetry, Error> {
    init(Config::from_file(path)?)
}

/// Options of the pipeline beyond the config: extra exporters and the span queue's sizes.
#[must_use = "the pipeline starts only with `init`"]
pub struct TelemetryBuilder {
    config: Config,
    exporters: Vec<Arc<dyn Exporter>>,
    span_queue_capacity: usize,
    span_batch_size: usize,
    span_batch_timeout: Duration,
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exporters: Vec<&str> = self.exporters.iter().map(|e| e.name()).collect();
        f.debug_struct("TelemetryBuilder")
            .field("config", &self.config)
            .field("exporters", &exporters)
            .field("span_queue_capacity", &self.span_queue_capacity)
            .field("span_batch_size", &self.span_batch_size)
            .field("span_batch_timeout", &self.span_batch_timeout)
            .finish()
    }
}

impl TelemetryBuilder {
    /// Adds an exporter besides those the config names, e.g. an
    /// [`InMemoryExporter`](crate::export::memory::InMemoryExporter) in tests.
    pub fn exporter(mut self, exporter: Arc<dyn Exporter>) -> TelemetryBuilder {
        self.exporters.push(exporter);
        self
    }

    /// How many finished spans each thread may have waiting for the exporters before its oldest are
    /// dropped (rounded up to a power of two); default
    /// [`DEFAULT_QUEUE_CAPACITY`](crate::trace::DEFAULT_QUEUE_CAPACITY). The bound is per thread: each
    /// thread that ends sampled spans gets a ring of its own, allocated on its first one, 640 bytes a span
    /// (640 KiB per thread by default; with 64 such threads, 40 MiB), kept after the thread exits until the
    /// spans in it are exported. At most 2^20 (a larger value is cut to it). Besides the queued spans,
    /// ended spans' allocations are kept for reuse by new ones: at most 512 in a shared pool and 32 per
    /// thread that makes sampled spans (a thread's are freed when it exits).
    pub fn span_queue_capacity(mut self, spans: usize) -> TelemetryBuilder {
        self.span_queue_capacity = spans.max(1);
        self
    }

    /// Spans per batch handed to the exporters; default
    /// [`DEFAULT_BATCH_SIZE`](crate::trace::DEFAULT_BATCH_SIZE). A batch goes out as soon as one thread has
    /// ended that many spans since the last. Under sustained load (a batch or more every 10 ms) the batcher
    /// looks for full batches every 10 ms instead, so that the request threads need not wake it. Above the
    /// (per-thread) queue capacity, batches go out by age only.
    pub fn span_batch_size(mut self, spans: usize) -> TelemetryBuilder {
        self.span_batch_size = spans.max(1);
        self
    }

    /// The longest a finished span waits before its batch goes out even if not full; default
    /// [`DEFAULT_BATCH_TIMEOUT`](crate::trace::DEFAULT_BATCH_TIMEOUT).
    pub fn span_batch_timeout(mut self, timeout: Duration) -> TelemetryBuilder {
        self.span_batch_timeout = timeout;
        self
    }

    /// Starts the pipeline. See [`init`].
    pub fn init(mut self) -> Result<Telemetry, Error> {
        // The config's fields are public: check them again, as they may have changed since it was read or
        // built. Before anything else, so that an invalid config changes nothing.
        self.config = self.config.validated()?;
        if LIVE.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(Error::AlreadyInitialized);
        }
        self.start().inspect_err(|_| LIVE.store(false, Ordering::Release))
    }

    fn start(self) -> Result<Telemetry, Error> {
        let TelemetryBuilder {
            config,
            mut exporters,
            span_queue_capacity,
            span_batch_size,
            span_batch_timeout,
        } = self;
        if exporters.is_empty() && !config.names_an_exporter() {
            return Err(no_exporter_error(&config));
        }
        // Views first: a conflicting view is a config-time error, before any thread or server starts.
        layer::register_layer_views(config.enabled_layers)?;
        // The sampler before any exporter starts: an exporter may read it at once (the ocagent exporter's
        // Config stream opens by reporting it), and a sampler the agent pushes then must win over this
        // one, not be overwritten by it. Put back if `init` fails below.
        let sampler = SamplerChange::set(Sampler::from_sample_rate(config.sample_rate));
        let runtime = BackgroundRuntime::new()?;
        let handle = runtime.handle().clone();

        // On error, `runtime` is dropped, which stops whatever the exporters started on it.
        exporters.extend(export::from_config(&config, &handle)?);
        let exporters: Arc<[Arc<dyn Exporter>]> = exporters.into();

        let sink = Arc::new(SpanSink::new(span_queue_capacity, span_batch_size));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let mut tasks = BackgroundTasks::default();
        // Background tasks start here: each gets a stop signal, fired at shutdown after the span queue is
        // drained and before the exporters shut down, and is awaited (up to the deadline).
        {
            let _inside = handle.enter();
            let period = config.reporting_period;
            let stats_exporters = exporters.to_vec();
            tasks.spawn("stats reporting", move |stop| stats::reporting_loop(period, stats_exporters, stop));
        }

        // Taken now, on this thread: spans may be dropped before the background thread gets going.
        let dropped_before = trace::dropped_spans();
        let batcher_sink = Arc::clone(&sink);
        let batcher_exporters = Arc::clone(&exporters);
        let (stopped_tx, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("oclayer-export".into())
            .spawn(move || {
                let runtime = runtime.into_inner();
                let exit_grace = runtime.block_on(async move {
                    let batcher = Batcher::new(
                        batcher_sink,
                        Arc::clone(&batcher_exporters),
                        span_batch_timeout,
                        dropped_before,
                    );
                    background(batcher, batcher_exporters, tasks, command_rx).await
                });
                // Tasks still running (an exporter's connection, a server) are cancelled; blocking work
                // gets until the shutdown deadline.
                runtime.shutdown_timeout(exit_grace);
                let _ = stopped_tx.send(());
            })
            .map_err(|e| pipeline_error(format!("cannot start the oclayer-export thread: {e}")))?;

        // Nothing fails from here on. The layers go on last, once ended spans have a queue to go to.
        sampler.keep();
        pipeline::install(sink);
        layer::set_enabled(config.enabled_layers);
        log_enabled_layers(config.enabled_layers);

        Ok(Telemetry {
            running: Some(Running { commands, thread: Some(thread), stopped: Some(stopped), exporters }),
        })
    }
}

/// Without an exporter, spans and views would be recorded for nobody: most likely a config that forgot its
/// exporters block, or a test that forgot its exporter.
fn no_exporter_error(config: &Config) -> Error {
    Error::Config {
        path: config.path_of("exporters"),
        message: "no exporter: the config names none and none was added in code; add one to the config \
                  (exporters.ocagent, exporters.prometheus or exporters.zpages, or ConfigBuilder::ocagent, \
                  ::prometheus or ::zpages) or pass one to Telemetry::builder(config).exporter(...)"
            .to_owned(),
    }
}

fn log_enabled_layers(layers: EnabledLayers) {
    if layers == EnabledLayers::NONE {
        tracing::warn!("telemetry started with every layer disabled: nothing will be recorded");
    } else {
        tracing::info!(layers = %layers.describe(), "telemetry started");
    }
}

/// The process-wide sampler `init` set, until `init` is sure to succeed: dropped before [`keep`]
/// (`init` failed), it puts the previous sampler back, so that a failed `init` leaves the process as it was.
///
/// [`keep`]: SamplerChange::keep
struct SamplerChange {
    previous: Option<Sampler>,
}

impl SamplerChange {
    fn set(sampler: Sampler) -> SamplerChange {
        let previous = trace::sampler();
        trace::set_sampler(sampler);
        SamplerChange { previous: Some(previous) }
    }

    fn keep(mut self) {
        self.previous = None;
    }
}

impl Drop for SamplerChange {
    fn drop(&mut self) {
        // Nothing else can have changed the sampler meanwhile through oclayer: the exporters' tasks (the
        // only ones that set it) run on the background thread, which did not start.
        if let Some(previous) = self.previous.take() {
            trace::set_sampler(previous);
        }
    }
}

/// The pipeline's runtime until its thread takes it over. Dropped before that (an exporter failed to
/// start, the thread could not be created), it shuts down in the background: a plain drop would panic when
/// `init` is called from inside an async runtime.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn new() -> Result<BackgroundRuntime, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("oclayer-export")
            .build()
            .map_err(|e| pipeline_error(format!("cannot create the export runtime: {e}")))?;
        Ok(BackgroundRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken by `into_inner`, which consumes the wrapper"),
        }
    }

    fn into_inner(mut self) -> tokio::runtime::Runtime {
        match self.0.take() {
            Some(runtime) => runtime,
            None => unreachable!("the runtime is only taken here, once"),
        }
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn pipeline_error(message: String) -> Error {
    Error::Pipeline { message }
}

/// The running pipeline. Shut it down with [`shutdown`](Telemetry::shutdown) to deliver what is queued;
/// dropping it stops the pipeline without waiting.
#[must_use = "dropping the handle stops the telemetry pipeline"]
pub struct Telemetry {
    /// `None` once shut down (`shutdown` consumes the handle, so only `Drop` sees it).
    running: Option<Running>,
}

struct Running {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
    /// Fires when the background thread has stopped its runtime and is about to exit.
    stopped: Option<oneshot::Receiver<()>>,
    exporters: Arc<[Arc<dyn Exporter>]>,
}

enum Command {
    Flush { deadline: Instant, reply: oneshot::Sender<Result<(), Error>> },
    Shutdown { deadline: Instant, reply: oneshot::Sender<Result<(), Error>> },
}

impl Telemetry {
    /// A builder, to add exporters or size the span queue before [`init`](TelemetryBuilder::init).
    pub fn builder(config: Config) -> TelemetryBuilder {
        TelemetryBuilder {
            config,
            exporters: Vec::new(),
            span_queue_capacity: trace::DEFAULT_QUEUE_CAPACITY,
            span_batch_size: trace::DEFAULT_BATCH_SIZE,
            span_batch_timeout: trace::DEFAULT_BATCH_TIMEOUT,
        }
    }

    /// Hands every span ended so far to the exporters and waits until they delivered it, up to
    /// [`DEFAULT_TIMEOUT`]. Fails as [`shutdown`](Telemetry::shutdown) does, with what is still queued
    /// (not lost: it is delivered later, or at shutdown).
    pub fn flush(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.flush_with_timeout(DEFAULT_TIMEOUT)
    }

    /// [`flush`](Telemetry::flush) with another deadline.
    pub fn flush_with_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        let sent = match &self.running {
            Some(running) => running.commands.send(Command::Flush { deadline, reply }).is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(stopped_error());
            }
            answer_by(deadline, answer, "flush").await?
        }
    }

    /// Stops the pipeline: switches every layer off, delivers the spans (and the last stats report) queued
    /// so far, shuts the exporters down and joins the background thread, within [`DEFAULT_TIMEOUT`].
    /// Afterwards `init` may be called again.
    ///
    /// # Errors
    /// [`Error::Undelivered`] when an exporter could not deliver everything by the deadline (the agent is
    /// down, hanging or slow): how many spans and stats reports were lost, and the last connection error.
    /// [`Error::Pipeline`] when an exporter did not answer at all by the deadline, or a background task
    /// failed.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown_with_timeout(DEFAULT_TIMEOUT).await
    }

    /// [`shutdown`](Telemetry::shutdown) with another deadline.
    pub async fn shutdown_with_timeout(mut self, timeout: Duration) -> Result<(), Error> {
        let Some(mut running) = self.running.take() else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        // No new spans, and spans ending from now on are not queued behind the final drain.
        detach_hooks();
        let (reply, answer) = oneshot::channel();
        let result = if running.commands.send(Command::Shutdown { deadline, reply }).is_ok() {
            match answer_by(deadline, answer, "shutdown").await {
                Ok(result) => result,
                Err(stuck) => {
                    // The thread is stuck (in an exporter, most likely): leave it behind rather than wait.
                    LIVE.store(false, Ordering::Release);
                    return Err(stuck);
                }
            }
        } else {
            Err(stopped_error())
        };
        // The thread stops its runtime (bounded by the deadline) and signals; joining is then immediate,
        // so this never blocks the caller's executor for long.
        if let Some(stopped) = running.stopped.take() {
            let _ = stopped.await;
        }
        if let Some(thread) = running.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the oclayer-export thread panicked");
        }
        LIVE.store(false, Ordering::Release);
        result
    }

    /// The exporters this pipeline feeds, config-driven and added ones.
    pub fn exporters(&self) -> &[Arc<dyn Exporter>] {
        self.running.as_ref().map_or(&[], |running| &running.exporters)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            detach_hooks();
            // Closing the command channel tells the background thread to hand what is queued to the
            // exporters and stop; it is not waited for, so dropping never hangs.
            drop(running);
            LIVE.store(false, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exporters: Vec<&str> = self.exporters().iter().map(|e| e.name()).collect();
        f.debug_struct("Telemetry")
            .field("running", &self.running.is_some())
            .field("exporters", &exporters)
            .finish()
    }
}

/// Switches every layer off and unhooks the span queue.
fn detach_hooks() {
    layer::set_enabled(EnabledLayers::NONE);
    pipeline::uninstall();
}

/// How long after its deadline the background thread may take to answer before it is considered stuck.
/// It enforces the deadline itself; this only covers its reply.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// The background thread's answer, or, if none comes by `deadline` plus [`ANSWER_GRACE`], an error saying
/// the thread is stuck: an exporter that blocks the thread must not hang the caller too. The timer is a
/// sleeping thread (see [`ring_at`]), so this needs no particular async runtime.
async fn answer_by(
    deadline: Instant,
    answer: oneshot::Receiver<Result<(), Error>>,
    what: &'static str,
) -> Result<Result<(), Error>, Error> {
    let (alarm, rung) = oneshot::channel::<()>();
    ring_at(deadline + ANSWER_GRACE, alarm);
    tokio::select! {
        biased;
        answered = answer => Ok(answered.unwrap_or_else(|_| Err(stopped_error()))),
        // Without a watchdog (its thread could not start), `rung` fails at once and this arm is skipped.
        Ok(()) = rung => Err(pipeline_error(format!(
            "{what} got no answer from the oclayer-export thread within its deadline; an exporter is \
             probably blocking it (exporters must not block in export_spans or export_stats)"
        ))),
    }
}

/// An alarm to ring at a time, unless its receiver is gone by then (the answer came first).
type Alarm = (Instant, oneshot::Sender<()>);

/// The watchdog thread's queue: one thread, started by the first `flush` or `shutdown` and then kept
/// waiting, rings every alarm. A thread per call made each `flush` start and end one: 61 to 87 µs of
/// process CPU a flush of an idle pipeline, against 39 to 47 µs now (the 2-core development VM), paid by
/// callers that flush often, such as a serverless handler at the end of every invocation.
static WATCHDOG: Mutex<Option<std::sync::mpsc::Sender<Alarm>>> = Mutex::new(None);

/// Hands `alarm` to the watchdog thread, starting it if there is none. If it cannot start, `alarm` is
/// dropped, so its receiver fails at once: no deadline rather than no answer.
fn ring_at(at: Instant, alarm: oneshot::Sender<()>) {
    let mut watchdog = WATCHDOG.lock().unwrap_or_else(PoisonError::into_inner);
    let mut request = (at, alarm);
    if let Some(alarms) = watchdog.as_ref() {
        match alarms.send(request) {
            Ok(()) => return,
            // Its thread is gone (it has nothing that panics, but if it did): start another.
            Err(std::sync::mpsc::SendError(unsent)) => request = unsent,
        }
    }
    let (alarms, received) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new().name("oclayer-deadline".into()).spawn(move || watch(&received));
    if started.is_ok() && alarms.send(request).is_ok() {
        *watchdog = Some(alarms);
    }
}

/// The watchdog thread: rings each alarm at its time, and forgets those whose receiver is gone.
fn watch(received: &std::sync::mpsc::Receiver<Alarm>) {
    let mut alarms: Vec<Alarm> = Vec::new();
    loop {
        let now = Instant::now();
        // Answered ones go too: sending to a caller that stopped listening does nothing.
        for (_, alarm) in alarms.extract_if(.., |(at, alarm)| *at <= now || alarm.is_closed()) {
            let _ = alarm.send(());
        }
        let next = alarms.iter().map(|(at, _)| *at).min();
        let alarm = match next {
            Some(at) => match received.recv_timeout(at.saturating_duration_since(now)) {
                Ok(alarm) => alarm,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match received.recv() {
                Ok(alarm) => alarm,
                Err(_) => return,
            },
        };
        alarms.push(alarm);
    }
}

fn stopped_error() -> Error {
    pipeline_error(
        "the telemetry pipeline has stopped (its background thread exited); call oclayer::init again".into(),
    )
}

type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Long-running tasks on the background runtime that must finish their work at shutdown (the stats
/// reporting loop hands over a last report).
#[derive(Default)]
struct BackgroundTasks {
    tasks: Vec<(&'static str, oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl BackgroundTasks {
    /// Spawns `task(stop)` onto the current runtime; `stop` resolves at shutdown, and the task should then
    /// finish its last round and return. Must be called inside the background runtime's context.
    fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop: StopSignal = Box::pin(async move {
            let _ = stop_rx.await;
        });
        self.tasks.push((name, stop_tx, tokio::spawn(task(stop))));
    }

    /// Signals every task to stop and waits for them until `deadline`.
    async fn stop(self, deadline: Instant) -> Result<(), Error> {
        let mut result = Ok(());
        for (name, stop, task) in self.tasks {
            let _ = stop.send(());
            match tokio::time::timeout_at(deadline.into(), task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(task = name, error = %e, "background task failed");
                    result = result.and(Err(pipeline_error(format!("background task {name} failed: {e}"))));
                }
                Err(_) => {
                    result = result.and(Err(pipeline_error(format!(
                        "background task {name} did not finish before the shutdown deadline"
                    ))));
                }
            }
        }
        result
    }
}

/// The background thread's main loop: batches spans until shutdown, serves flush requests. Returns how long
/// the runtime may take to stop.
async fn background(
    mut batcher: Batcher,
    exporters: Arc<[Arc<dyn Exporter>]>,
    tasks: BackgroundTasks,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Duration {
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Command::Flush { deadline, reply }) => {
                    batcher.send_all();
                    let _ = reply.send(each_exporter(&exporters, deadline, Step::Flush).await);
                }
                Some(Command::Shutdown { deadline, reply }) => {
                    // The order matters: spans first, then the tasks' last rounds (the last stats report),
                    // then the exporters deliver all of it and close.
                    batcher.send_all();
                    let tasks_result = tasks.stop(deadline).await;
                    let exporters_result = each_exporter(&exporters, deadline, Step::Shutdown).await;
                    let _ = reply.send(tasks_result.and(exporters_result));
                    return deadline.saturating_duration_since(Instant::now());
                }
                None => {
                    // The handle was dropped without shutdown: hand over what is queued, wait for nothing.
                    batcher.send_all();
                    return Duration::ZERO;
                }
            },
            due = batcher.due() => {
                batcher.send_due(due);
                // With a backlog the next round is due at once, and a loop that never waits would starve
                // the tasks sharing this thread (the exporters' connections, the stats reports).
                tokio::task::yield_now().await;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    Flush,
    Shutdown,
}

/// The most an exporter's deadline comes before the caller's, so that its answer (what it could not deliver)
/// is in before the pipeline stops waiting for it; at most a tenth of the time left.
const REPORT_MARGIN: Duration = Duration::from_millis(100);

/// The deadline exporters get for a step the caller wants done by `deadline`. An exporter answers at its
/// deadline with what it could not deliver; given the caller's own, that answer would race the pipeline's
/// timeout and usually lose, leaving only "did not shut down before the deadline".
fn exporter_deadline(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - REPORT_MARGIN.min(left / 10)
}

/// Flushes or shuts down every exporter concurrently, each bounded by `deadline` (see
/// [`exporter_deadline`]). The first error is returned; every error is logged.
async fn each_exporter(exporters: &[Arc<dyn Exporter>], deadline: Instant, step: Step) -> Result<(), Error> {
    let own_deadline = exporter_deadline(deadline);
    let running: Vec<_> = exporters
        .iter()
        .map(|exporter| {
            let exporter = Arc::clone(exporter);
            let name = exporter.name();
            let task = tokio::spawn(async move {
                match step {
                    Step::Flush => exporter.flush(own_deadline).await,
                    Step::Shutdown => exporter.shutdown(own_deadline).await,
                }
            });
            (name, task)
        })
        .collect();
    let verb = match step {
        Step::Flush => "flush",
        Step::Shutdown => "shut down",
    };
    let mut result = Ok(());
    for (name, task) in running {
        let outcome = match tokio::time::timeout_at(deadline.into(), task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join_error)) => {
                Err(pipeline_error(format!("exporter {name} failed to {verb}: {join_error}")))
            }
            Err(_) => Err(pipeline_error(format!("exporter {name} did not {verb} before the deadline"))),
        };
        if let Err(e) = outcome {
            tracing::error!(exporter = name, error = %e, "exporter failed to {verb}");
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}
