//! Man pages and shell completions of netmon's programs, written when a
//! program runs with `NETMON_GENERATE_ASSETS=DIR` (packaging does this).

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Environment variable naming the directory to write assets into.
pub const ASSETS_ENV: &str = "NETMON_GENERATE_ASSETS";

/// The assets directory, when the program was asked for its assets.
pub fn requested() -> Option<PathBuf> {
    std::env::var_os(ASSETS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// For a program's `main`: when assets were requested, writes them and
/// returns the exit code to end with; otherwise `None` and the program runs.
pub fn run_if_requested(
    cmd: impl FnOnce() -> clap::Command,
    section: &str,
) -> Option<std::process::ExitCode> {
    let dir = requested()?;
    let cmd = cmd();
    let name = cmd.get_name().to_owned();
    Some(match generate(cmd, section, &dir) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{name}: cannot write man page and completions to '{}': {e}",
                dir.display()
            );
            std::process::ExitCode::FAILURE
        }
    })
}

/// Writes `DIR/man/NAME.SECTION` and bash, zsh and fish completions under
/// `DIR/completions/`.
pub fn generate(mut cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .render(&mut page)?;
    std::fs::write(man_dir.join(format!("{name}.{section}")), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &comp_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_man_page_and_three_completions() {
        let dir = std::env::temp_dir().join(format!("netmon-assets-{}", std::process::id()));
        let cmd = clap::Command::new("demo").arg(clap::Arg::new("x").long("x"));
        generate(cmd, "1", &dir).unwrap();
        assert!(dir.join("man/demo.1").exists());
        for f in ["demo.bash", "_demo", "demo.fish"] {
            assert!(dir.join("completions").join(f).exists(), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
