//! `DIR/curves.png`: loss and accuracy per epoch, and the training loss over steps, drawn with
//! plotters on its bitmap backend. Text uses DejaVu Sans embedded in the binary (the `dejavu`
//! crate) through plotters' ab_glyph renderer, so it draws on a machine with no fonts installed.

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::sync::Once;

/// One row of metrics.csv.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochPoint {
    /// The epoch, from 1.
    pub epoch: f64,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy, in percent.
    pub train_accuracy: f64,
    /// Mean test loss over the test split's steps.
    pub test_loss: f64,
    /// Test accuracy, in percent.
    pub test_accuracy: f64,
}

/// The training loss over steps: (epoch as a fraction, the epoch's running mean loss).
pub type StepLosses = Vec<(f64, f64)>;

/// A line of a chart: its legend, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid font; were it not, the labels would be missing, not the curves.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

const SIZE: (u32, u32) = (1200, 480);

/// The curves of `epochs` and of the training loss at `steps` ((epoch as a fraction, running
/// loss)), as a 1200×480 PNG file's bytes.
pub fn png(network: &str, epochs: &[EpochPoint], steps: &[(f64, f64)]) -> Result<Vec<u8>, String> {
    let mut rgb = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(&mut rgb, network, epochs, steps)?;
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb).expect("the buffer holds the picture");
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(bytes)
}

fn draw(rgb: &mut [u8], network: &str, epochs: &[EpochPoint], steps: &[(f64, f64)]) -> Result<(), String> {
    register_fonts();
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw the curves: {e}");
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(600);
    let last = epochs.iter().map(|p| p.epoch).fold(1.0, f64::max);
    let top_loss =
        epochs.iter().flat_map(|p| [p.train_loss, p.test_loss]).chain(steps.iter().map(|s| s.1)).fold(0.1, f64::max);
    let mut loss = ChartBuilder::on(&left)
        .caption(format!("{network}: loss"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, 0.0..top_loss * 1.05)
        .map_err(|e| fail(&e))?;
    loss.configure_mesh().x_desc("epoch").y_desc("cross-entropy").draw().map_err(|e| fail(&e))?;
    let series: [Series; 3] = [
        ("training, running mean of the epoch", RGBColor(170, 170, 220), steps.to_vec()),
        ("training", BLUE, epochs.iter().map(|p| (p.epoch, p.train_loss)).collect()),
        ("test", RED, epochs.iter().map(|p| (p.epoch, p.test_loss)).collect()),
    ];
    for (label, color, points) in series {
        loss.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    loss.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| fail(&e))?;

    let floor = epochs.iter().flat_map(|p| [p.train_accuracy, p.test_accuracy]).fold(100.0, f64::min);
    let mut accuracy = ChartBuilder::on(&right)
        .caption(format!("{network}: accuracy"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last, (floor - 1.0).max(0.0)..100.0)
        .map_err(|e| fail(&e))?;
    accuracy.configure_mesh().x_desc("epoch").y_desc("accuracy (%)").draw().map_err(|e| fail(&e))?;
    let series: [Series; 2] = [
        ("training", BLUE, epochs.iter().map(|p| (p.epoch, p.train_accuracy)).collect()),
        ("test", RED, epochs.iter().map(|p| (p.epoch, p.test_accuracy)).collect()),
    ];
    for (label, color, points) in series {
        accuracy
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)).point_size(3))
            .map_err(|e| fail(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    accuracy
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}
