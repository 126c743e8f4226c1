//! The `infergraph` command line: `serve`, `generate`, `classify`, `init-weights`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::backend::{self, BackendChoice, SelectedDevice};
use crate::config::auth::AuthMode;
use crate::config::{Config, LogFormat};
use crate::loadtest;
use crate::models::json_mode::JsonSchema;
use crate::models::logprobs::MAX_TOP_LOGPROBS;
use crate::models::presets::{self, Preset, WeightDtype};
use crate::models::sampling::SamplingParams;
use crate::models::{self, Dtype, GenerationParams, ResponseFormat};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "infergraph",
    version,
    about = "An inference graph server: text generators feeding a classifier, over HTTP and websockets"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the graph over HTTP.
    Serve(ServeArgs),
    /// Continue a prompt with a generator: a GPT-2, Llama, Mistral, Qwen2 or Qwen3 folder, or a
    /// GGUF file (greedy unless --temperature is set).
    Generate(GenerateArgs),
    /// Classify a text (or a text pair) with a BERT, RoBERTa, XLM-RoBERTa or DistilBERT folder.
    Classify(ClassifyArgs),
    /// Write random-weight model folders in Hugging Face layout.
    InitWeights(InitWeightsArgs),
    /// Load-test the graph: in-process at the actors, or a server over HTTP or websocket.
    Loadtest(LoadtestArgs),
    /// Ask the server that `serve` with the same config and overrides would run whether it
    /// is up (GET /livez on its own port; with --ready, /readyz); exits 0 if so. For
    /// container healthchecks and probes.
    Health(HealthArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TargetKind {
    /// The actor system, in-process, from --config (no HTTP).
    Actor,
    /// A server's POST /v1/graph.
    Http,
    /// A server's /v1/graph/ws, with time to first token.
    Ws,
}

#[derive(Debug, Args)]
struct LoadtestArgs {
    #[arg(long, value_enum)]
    target: TargetKind,
    /// The server for http and ws, e.g. http://127.0.0.1:3000 (a /v1/graph path is accepted).
    /// A server with keys gets `INFERGRAPH_API_KEY`'s (as a bearer token over http, in the
    /// subprotocol offer over ws).
    url: Option<String>,
    /// The config the actor target starts the graph from.
    #[arg(long, env = "INFERGRAPH_CONFIG", default_value = "config.toml")]
    config: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How many requests to send (default 32, unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    requests: Option<usize>,
    /// Seconds to keep starting requests.
    #[arg(long)]
    duration: Option<f64>,
    /// Open loop: start this many requests per second, whatever the latency.
    #[arg(long)]
    rate: Option<f64>,
    /// A file of prompts, one per line (default: a small built-in set).
    #[arg(long)]
    prompts: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long)]
    seed: Option<u64>,
    /// Drive this model on its own (its actor, or /v1/models/NAME/generate or /classify)
    /// instead of the graph; actor and http targets only.
    #[arg(long)]
    model: Option<String>,
    /// Drive this graph of the config (`[[graphs]]`) instead of the default one.
    #[arg(long)]
    graph: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct BackendArg {
    /// auto (wgpu on a real GPU, else CPU), wgpu, or cpu.
    #[arg(long, env = "INFERGRAPH_BACKEND")]
    backend: Option<BackendChoice>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[arg(long, env = "INFERGRAPH_CONFIG", default_value = "config.toml")]
    config: PathBuf,
    #[arg(long, env = "INFERGRAPH_HOST")]
    host: Option<String>,
    #[arg(long, env = "INFERGRAPH_PORT")]
    port: Option<u16>,
    /// Whether API keys are required: auto, keys or none (see `[auth] mode`). The keys
    /// themselves never come from the command line.
    #[arg(long, env = "INFERGRAPH_AUTH", value_enum)]
    auth: Option<AuthMode>,
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct HealthArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Ask whether it is ready (every model loaded: /readyz) rather than up (/livez).
    #[arg(long)]
    ready: bool,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// A generator's model folder (Hugging Face layout) or GGUF file.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// Suppress end-of-sequence until this many tokens are generated.
    #[arg(long, default_value_t = 0)]
    min_new_tokens: usize,
    /// Sample at this temperature (0, the default, is greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    /// Keep the tokens at least this many times as likely as the most likely one.
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// OpenAI's presence penalty: lowers each generated token's logit once (-2 to 2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    presence_penalty: f32,
    /// OpenAI's frequency penalty: lowers a token's logit for each time it was generated (-2
    /// to 2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    frequency_penalty: f32,
    /// Seed of the sampling RNG, for reproducible samples.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop once the continuation contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// JSON mode: the continuation is a JSON object.
    #[arg(long, conflicts_with = "json_schema")]
    json_object: bool,
    /// Structured output: the continuation is a value of the JSON Schema in this file.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// With `--json`: each new token's log-probability under the model, with this many
    /// most likely alternatives (0 to 20).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=MAX_TOP_LOGPROBS as i64))]
    logprobs: Option<u8>,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
    /// What the dense layers' weights are kept in: f32, f16, bf16, int8, w8a8, q4 or w4a8
    /// (default: as stored; f32 for a safetensors folder, a GGUF file's own).
    #[arg(long)]
    dtype: Option<Dtype>,
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct ClassifyArgs {
    /// A sequence-classification model folder (bert, roberta, xlm-roberta, distilbert).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    text: String,
    /// Second text of a sentence pair.
    #[arg(long)]
    text_pair: Option<String>,
    /// Print one JSON object instead of the label.
    #[arg(long)]
    json: bool,
    /// What the dense layers' weights are kept in: f32, f16, bf16, int8, w8a8, q4 or w4a8
    /// (default: as stored; f32 for a safetensors folder, a GGUF file's own).
    #[arg(long)]
    dtype: Option<Dtype>,
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct InitWeightsArgs {
    /// A true-size random model of this architecture (for benchmarks).
    #[arg(long, required_unless_present = "demo", conflicts_with = "demo")]
    preset: Option<Preset>,
    /// The four small demo models that `model-weights/` ships.
    #[arg(long)]
    demo: bool,
    /// The model folder to write (with --preset) or the parent of the four (with --demo).
    #[arg(long)]
    out: PathBuf,
    /// Element type of the written weights: f32 by default with --preset, f16 (what
    /// model-weights/ ships) with --demo. There is no int8 checkpoint: a model is quantized
    /// when it loads with `dtype = "int8"`.
    #[arg(long, value_enum)]
    dtype: Option<WeightDtype>,
}

/// Runs the command line; the binary is only this.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `dtype`, or the model's stored one (`models::stored_dtype`).
fn stored_or(dtype: Option<Dtype>, model: &std::path::Path) -> Result<Dtype, String> {
    match dtype {
        Some(dtype) => Ok(dtype),
        None => models::stored_dtype(model).map_err(|e| e.to_string()),
    }
}

/// `--json-object` or `--json-schema FILE` as a generation's format.
fn response_format(json_object: bool, schema: Option<&Path>) -> Result<ResponseFormat, String> {
    let Some(path) = schema else {
        return Ok(if json_object {
            ResponseFormat::JsonObject
        } else {
            ResponseFormat::Text
        });
    };
    let fail = |e: String| format!("--json-schema {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let spec = serde_json::json!({"name": "cli", "schema": schema});
    let compiled = JsonSchema::from_openai(&spec).map_err(fail)?;
    Ok(ResponseFormat::JsonSchema(std::sync::Arc::new(compiled)))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Health(args) => health(args),
        Command::Generate(args) => {
            telemetry::init_tracing(LogFormat::Human, "warn");
            let device = choose_device(args.backend.backend.unwrap_or_default());
            let generator = models::load_generator_as(&args.model, &device.device, args.dtype)
                .map_err(|e| e.to_string())?;
            let params = GenerationParams {
                max_new_tokens: args.max_new_tokens,
                min_new_tokens: args.min_new_tokens,
                sampling: SamplingParams {
                    temperature: args.temperature,
                    top_k: args.top_k,
                    top_p: args.top_p,
                    min_p: args.min_p,
                    repetition_penalty: args.repetition_penalty,
                    presence_penalty: args.presence_penalty,
                    frequency_penalty: args.frequency_penalty,
                    logit_bias: Vec::new(),
                    seed: args.seed,
                },
                stop: args.stop,
                response_format: response_format(args.json_object, args.json_schema.as_deref())?,
                logprobs: args.logprobs.map(usize::from),
                ..GenerationParams::default()
            };
            params.sampling.validate()?;
            let generation = generator
                .generate(&args.prompt, &params)
                .map_err(|e| e.to_string())?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&generation).expect("serializable")
                );
            } else {
                println!("{}", generation.text);
            }
            Ok(())
        }
        Command::Classify(args) => {
            telemetry::init_tracing(LogFormat::Human, "warn");
            let device = choose_device(args.backend.backend.unwrap_or_default());
            let classifier = models::load_classifier_in(
                &args.model,
                &device.device,
                stored_or(args.dtype, &args.model)?,
            )
            .map_err(|e| e.to_string())?;
            let result = classifier
                .classify(&args.text, args.text_pair.as_deref())
                .map_err(|e| e.to_string())?;
            if args.json {
                println!("{}", serde_json::to_string(&result).expect("serializable"));
            } else {
                println!("{} {:.6}", result.label, result.score);
            }
            Ok(())
        }
        Command::InitWeights(args) => init_weights(args),
        Command::Loadtest(args) => loadtest(args),
    }
}

/// The API key a client command sends (`INFERGRAPH_API_KEY`): an environment variable, never
/// an argument, so it stays out of shell history and `ps`.
fn api_key() -> Option<String> {
    std::env::var("INFERGRAPH_API_KEY")
        .ok()
        .filter(|key| !key.is_empty())
}

fn loadtest(args: LoadtestArgs) -> Result<(), String> {
    telemetry::init_tracing(LogFormat::Human, "warn");
    let base = || -> Result<String, String> {
        let url = args
            .url
            .clone()
            .ok_or("--target http and ws need the server's URL")?;
        let url = url.trim_end_matches('/');
        Ok(url
            .trim_end_matches("/v1/graph/ws")
            .trim_end_matches("/v1/graph")
            .to_string())
    };
    let target = match args.target {
        TargetKind::Actor => loadtest::Target::Actor {
            config: args.config.clone(),
            backend: args.backend.backend,
        },
        TargetKind::Http => loadtest::Target::Http {
            base: base()?,
            key: api_key(),
        },
        TargetKind::Ws => loadtest::Target::Ws {
            base: base()?,
            key: api_key(),
        },
    };
    let prompts = match &args.prompts {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => loadtest::BUILT_IN_PROMPTS
            .iter()
            .map(|p| p.to_string())
            .collect(),
    };
    let prompts: Vec<String> = prompts;
    if prompts.is_empty() {
        return Err("the prompts file has no prompts".into());
    }
    let report = loadtest::run(loadtest::Options {
        target,
        concurrency: args.concurrency,
        requests: args.requests,
        duration: args.duration.map(std::time::Duration::from_secs_f64),
        rate: args.rate,
        prompts,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        seed: args.seed,
        model: args.model.clone(),
        graph: args.graph.clone(),
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = serve_config(args)?;
    telemetry::init_tracing(config.logging.format, &config.logging.level);
    crate::http::serve(config)
}

/// The config `serve` runs: the file, then the command line and environment over it.
fn serve_config(args: ServeArgs) -> Result<Config, String> {
    let mut config = Config::from_file(&args.config).map_err(|e| e.to_string())?;
    if let Some(backend) = args.backend.backend {
        config.backend = backend;
    }
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    if let Some(mode) = args.auth {
        config.auth.mode = mode;
    }
    Ok(config)
}

/// `GET /livez` (or `/readyz`) on the address the server listens on (an unspecified bind,
/// 0.0.0.0 or ::, is asked on loopback); neither needs a key. Over TLS when `[server.tls]` is set: the
/// probe trusts exactly the certificate the config names, and where the server requires
/// client certificates it presents `[remote.tls]`'s, else the server's own.
fn health(args: HealthArgs) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
    let config = serve_config(args.serve)?;
    let path = if args.ready { "/readyz" } else { "/livez" };
    let (host, port) = (config.server.host.as_str(), config.server.port);
    if port == 0 {
        return Err("[server] port is 0 (a free port picked at start): give a fixed port".into());
    }
    let address: SocketAddr = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, port).into(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, port).into(),
        Ok(ip) => (ip, port).into(),
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?,
    };
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{address}{path}");
    let timeout = std::time::Duration::from_secs(2);
    let tcp = TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("{url}: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> = match &config.server.tls {
        Some(server) => {
            let client = match (&config.remote.tls, &server.client_ca) {
                (Some(remote), _) if remote.cert.is_some() => {
                    remote.cert.as_deref().zip(remote.key.as_deref())
                }
                (_, Some(_)) => Some((server.cert.as_path(), server.key.as_path())),
                _ => None,
            };
            let settings = crate::tls::probe_config(server, client)?;
            let connection =
                rustls::ClientConnection::new(std::sync::Arc::new(settings), address.ip().into())
                    .map_err(|e| format!("{url}: {e}"))?;
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
        None => Box::new(tcp),
    };
    let host_header = match address.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{ip}:{port}"),
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host_header}\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or("no answer");
    if status.starts_with("HTTP/1.1 200") {
        println!("{url}: {status}");
        Ok(())
    } else {
        Err(format!("{url}: {status}"))
    }
}

/// A plain or a TLS connection, for the probe.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn init_weights(args: InitWeightsArgs) -> Result<(), String> {
    let started = Instant::now();
    if args.demo {
        for preset in Preset::DEMOS {
            let out = args.out.join(preset.name());
            let dtype = args.dtype.unwrap_or(WeightDtype::F16);
            presets::write_demo(preset, &out, dtype).map_err(|e| e.to_string())?;
            println!("wrote {}", out.display());
        }
    } else if let Some(preset) = args.preset {
        let dtype = args.dtype.unwrap_or(WeightDtype::F32);
        presets::write_true_size(preset, &args.out, dtype).map_err(|e| e.to_string())?;
        println!(
            "wrote {} ({}) in {:.1} s",
            args.out.display(),
            preset.name(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn choose_device(choice: BackendChoice) -> SelectedDevice {
    let selected = backend::select(choice);
    tracing::info!(
        backend = selected.backend,
        device = %selected.name,
        reason = %selected.reason,
        "device selected"
    );
    selected
}
