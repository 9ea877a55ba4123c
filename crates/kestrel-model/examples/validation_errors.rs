//! Developer tool: which validation chips a model gets wrong. Writes a contact sheet of the
//! false negatives (above the red rule) and false positives (below) with their places.
//! `cargo run --release --example validation_errors -- PROJECT CLASS MODEL VALIDATE_ON OUT.png`

use burn::tensor::{Device, Tensor, TensorData};
use kestrel_model::network::centre_cell;
use kestrel_samples::chips::{build_chips, contact_sheet, ChipOptions};
use kestrel_samples::{Polarity, Project};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let project = Project::open(std::path::Path::new(&a[1])).unwrap();
    let (meta, net) =
        kestrel_model::package::load_package(std::path::Path::new(&a[3]), &Device::default())
            .unwrap();
    let ids: Vec<i64> = project
        .images()
        .unwrap()
        .iter()
        .filter(|i| i.uri.contains(a[4].as_str()))
        .map(|i| i.id)
        .collect();
    let opts = ChipOptions {
        images: Some(ids),
        contract: Some(meta.contract.clone()),
        auto_negative_ratio: meta.training.negatives as f64 / meta.training.positives as f64,
        ..Default::default()
    };
    let set = build_chips(&project, &a[2], &opts, |_, _| {}).unwrap();
    let mut wrong = Vec::new();
    for part in set.chips.chunks(64) {
        let (c, s) = (part[0].chip.bands, part[0].chip.size);
        let x: Vec<f32> = part
            .iter()
            .flat_map(|r| r.chip.data.iter().copied())
            .collect();
        let t: Tensor<4> = Tensor::from_data(
            TensorData::new(x, [part.len(), c, s, s]),
            &Device::default(),
        );
        let p: Vec<f32> =
            burn::tensor::activation::softmax(centre_cell(net.forward(t).class_logits), 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
        for (i, r) in part.iter().enumerate() {
            let score = p[i * 2 + 1];
            if (score >= 0.5) != (r.polarity == Polarity::Positive) {
                println!(
                    "{:?} score {score:.3} {} at {:.0},{:.0} sample {:?}",
                    r.polarity, r.image_uri, r.centre_px[0], r.centre_px[1], r.sample_id
                );
                wrong.push(r.clone());
            }
        }
    }
    contact_sheet(&wrong, 16, 16).save(&a[5]).unwrap();
}
