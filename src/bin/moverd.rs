//! `moverd`: the mover agent that runs on every HVM host.

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    log::info!("{}", lpar_mover::build_identity::BuildIdentity::current());
}
