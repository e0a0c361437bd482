//! `moverctl`: the management client.

fn main() {
    println!("{}", lpar_mover::build_identity::BuildIdentity::current());
}
