use clap::Args;
use serde_json::json;

use bundlegen::pipeline::inspect::Inspection;

use super::image_args::ImageArgs;

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let Inspection { image, tags } = bundlegen::pipeline::inspect::inspect(&args.image.image, args.image.selector())?;
    let cfg = image.config.config.clone().unwrap_or_default();
    if args.json {
        let layers: Vec<_> = image
            .layers
            .iter()
            .map(|l| {
                json!({
                    "mediaType": l.descriptor.media_type,
                    "digest": l.descriptor.digest.to_string(),
                    "size": l.descriptor.size,
                    "diffId": l.diff_id.to_string(),
                })
            })
            .collect();
        let out = json!({
            "name": image.name,
            "manifestDigest": image.manifest_digest.to_string(),
            "configDigest": image.config_digest.to_string(),
            "tag": image.tag,
            "tags": tags,
            "platform": {
                "architecture": image.platform.architecture,
                "os": image.platform.os,
                "variant": image.platform.variant,
            },
            "layers": layers,
            "config": {
                "Entrypoint": cfg.entrypoint,
                "Cmd": cfg.cmd,
                "Env": cfg.env,
                "User": cfg.user,
                "WorkingDir": cfg.working_dir,
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Image:        {}", image.name);
    println!("Manifest:     {}", image.manifest_digest);
    println!("Config:       {}", image.config_digest);
    println!("Platform:     {}", image.platform);
    println!("Tags:         {}", if tags.is_empty() { "(none)".to_owned() } else { tags.join(", ") });
    println!("Entrypoint:   {}", quote_list(cfg.entrypoint.as_deref()));
    println!("Cmd:          {}", quote_list(cfg.cmd.as_deref()));
    println!("User:         {}", cfg.user.as_deref().filter(|u| !u.is_empty()).unwrap_or("(root)"));
    println!("WorkingDir:   {}", cfg.working_dir.as_deref().filter(|u| !u.is_empty()).unwrap_or("/"));
    println!("Env:");
    for e in cfg.env.iter().flatten() {
        println!("  {e}");
    }
    println!("Layers:");
    for l in &image.layers {
        println!(
            "  {:>2}. {}  {:>12} bytes  {}\n      diff_id {}",
            l.index + 1,
            l.descriptor.digest,
            l.descriptor.size,
            l.descriptor.media_type,
            l.diff_id
        );
    }
    Ok(())
}

fn quote_list(v: Option<&[String]>) -> String {
    match v {
        None => "(none)".into(),
        Some(items) => serde_json::to_string(items).unwrap_or_default(),
    }
}
