// Decl-line fixture (Rust): a method, a generic function, an always-inlined function. rustc's
// DW_AT_decl_line is the line of `fn` (the DECL: marker), which stands above the name here.
use std::env;

struct Meter {
    k: u64,
}

impl Meter {
    #[inline(never)]
    fn // DECL:measure
    measure(&self, v: u64) -> u64
    {
        double(v) * self.k + 1
    }
}

#[inline(always)]
fn // DECL:double
double(v: u64) -> u64
{
    v.rotate_left(7) ^ v.wrapping_mul(0x9e37_79b9)
}

#[inline(never)]
fn // DECL:fold
fold<T: Copy + Into<u64>>(items: &[T]) -> u64
{
    let m = Meter { k: 3 };
    items.iter().map(|&x| m.measure(x.into())).sum()
}

fn // DECL:main
main()
{
    // the first argument: rounds of the hot loop
    let rounds: u64 = env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let v: Vec<u32> = (0..1000).collect();
    let mut total = 0u64;
    for r in 0..rounds {
        total = total.wrapping_add(fold(&v[..1000 - (r & 7) as usize]));
    }
    println!("{}", total);
}
