//! `eventi log CAPABILITY`: a drop chain from its newest drop back to its
//! first, one line each (time, kind, size, name, capability).

use std::process::ExitCode;

use eventi::format::dirent::Kind;

/// Options of `eventi log`.
#[derive(clap::Args)]
pub struct Args {
    /// A capability line, `-` to read it from stdin, or @FILE.
    capability: String,
    /// A server to read from, before those the lines name (repeatable).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Print a JSON array, newest first.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cap = super::reading::read(&args.capability)?;
    let reader = super::reading::reader(&cap, &args.servers)?;
    let chain = reader.chain(&cap)?;
    let rows: Vec<serde_json::Value> = chain
        .iter()
        .map(|(cap, envelope)| {
            let e = &envelope.entry;
            serde_json::json!({
                "time": super::format_time(envelope.time_ns),
                "time_ns": envelope.time_ns,
                "kind": if e.kind == Kind::Dir { "tree" } else { "file" },
                "size": e.size,
                "name": String::from_utf8_lossy(&e.name),
                "capability": cap.to_line(),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            println!(
                "{}  {:<4}  {:>10}  {}  {}",
                r["time"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or(""),
                super::human_bytes(r["size"].as_u64().unwrap_or(0)),
                r["name"].as_str().unwrap_or(""),
                r["capability"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
