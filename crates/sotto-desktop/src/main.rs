//! `sotto-desktop`: the desktop app. Flags, logging to a file, the window.

use std::path::PathBuf;

use clap::Parser;
use eframe::egui;
use sotto_desktop::DesktopApp;
use sotto_desktop::os::DesktopNotifier;
use sotto_desktop::settings::Settings;

/// Sotto, end-to-end encrypted chat, in a window.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the app keeps its settings, the servers it trusts, this
    /// device's keys and received files [default: the platform data dir,
    /// e.g. ~/.local/share/sotto-desktop].
    #[arg(long, env = "SOTTO_DESKTOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Verbose logs (in sotto-desktop.log in the data dir).
    #[arg(long, env = "SOTTO_DEBUG")]
    debug: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(data_dir) = args
        .data_dir
        .or_else(|| dirs::data_dir().map(|d| d.join("sotto-desktop")))
    else {
        eprintln!("sotto-desktop: no data dir; pass --data-dir");
        return std::process::ExitCode::FAILURE;
    };
    if let Err(e) = logging(&data_dir, args.debug) {
        eprintln!("sotto-desktop: cannot log to {}: {e}", data_dir.display());
    }
    let settings = Settings::load(&sotto_desktop::settings::file(&data_dir));
    let size = settings.window.unwrap_or([1000.0, 700.0]);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Sotto")
            .with_app_id("sotto-desktop")
            .with_inner_size(size)
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let result = eframe::run_native(
        "Sotto",
        options,
        Box::new(move |cc| {
            prefer_system_emoji(&cc.egui_ctx);
            Ok(Box::new(DesktopApp::new(
                data_dir,
                Box::new(DesktopNotifier::default()),
            )))
        }),
    );
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-desktop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the system has an emoji font (colour, usually), it draws emoji
/// right after the text font, before any other system font (which may
/// have older, monochrome ones) and in place of the monochrome ones built
/// in.
fn prefer_system_emoji(ctx: &egui::Context) {
    let Some(emoji) = system_emoji_font() else {
        tracing::info!("no system emoji font: the built-in monochrome emoji are used");
        return;
    };
    let mut fonts = egui::FontDefinitions::default();
    fonts
        .font_data
        .insert("system-emoji".into(), std::sync::Arc::new(emoji));
    for family in fonts.families.values_mut() {
        family.retain(|name| name != "NotoEmoji-Regular" && name != "emoji-icon-font");
        let at = family.len().min(1);
        family.insert(at, "system-emoji".into());
    }
    ctx.set_fonts(fonts);
}

/// The first font of the system's emoji family.
fn system_emoji_font() -> Option<egui::FontData> {
    let mut collection = fontique::Collection::new(fontique::CollectionOptions {
        shared: false,
        system_fonts: true,
    });
    let mut cache = fontique::SourceCache::new(fontique::SourceCacheOptions::default());
    let family = collection
        .generic_families(fontique::GenericFamily::Emoji)
        .next()?;
    let info = collection.family(family)?;
    let font = info.fonts().first()?;
    let (blob, _) = font.load(Some(&mut cache))?.into_raw_parts();
    Some(egui::FontData::from_blob(blob, font.index()))
}

/// Logs go to `sotto-desktop.log` in the data dir.
fn logging(data_dir: &std::path::Path, debug: bool) -> std::io::Result<()> {
    // The data dir holds this device's keys: private to the user (0700),
    // and so is the log (who wrote, when).
    sotto_client::device::create_private_dir(data_dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(data_dir.join("sotto-desktop.log"))?;
    let level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
