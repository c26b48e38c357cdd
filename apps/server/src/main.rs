//! The `wxlogin` binary: parse the command line and the configuration, run.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wxlogin_domain::AppId;
use wxlogin_server::{Settings, config::MOCK_APP_ID, telemetry, wiring};

#[derive(Parser)]
#[command(name = "wxlogin", version, about = "WeChat mini-program login backend")]
struct Cli {
    /// Configuration file (default: ./wxlogin.toml when present).
    #[arg(long, global = true, env = "WXLOGIN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Run the mock WeChat server API (jscode2session, and its control API under /mock).
    MockWechat {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// The app id the mock answers for (watermarks carry it); repeat it to answer for
        /// several mini-programs (the control API of each is at /mock/apps/{appid}, the
        /// first's also at /mock).
        #[arg(long = "app-id", default_value = MOCK_APP_ID)]
        app_ids: Vec<String>,
        /// Require this app secret on jscode2session (when unset, any secret is accepted).
        #[arg(long, env = "WXLOGIN_MOCK_APP_SECRET", hide_env_values = true)]
        app_secret: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The one validation step: an invalid value stops here, with one line naming the key.
    let config = match Settings::load(cli.config.as_deref()).and_then(Settings::parse) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wxlogin: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let server = wiring::start(config, Vec::new()).await?;
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            server.shutdown().await
        }
        Command::MockWechat {
            addr,
            app_ids,
            app_secret,
        } => {
            let mut mocks = Vec::new();
            for app_id in app_ids {
                let app_id = AppId::parse(&app_id).map_err(|e| anyhow::anyhow!("--app-id: {e}"))?;
                mocks.push(wxlogin_wechat_mock::MockWeChat::new(
                    app_id,
                    app_secret.clone(),
                ));
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(%addr, "mock WeChat listening; control API at /mock");
            wxlogin_wechat_mock::serve_apps(listener, mocks, shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
