pub fn run(_w: &std::path::Path, _q: bool) -> anyhow::Result<()> { anyhow::bail!("not yet") }
