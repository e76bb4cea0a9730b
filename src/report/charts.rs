//! The HTML report's charts, drawn as inline SVG by `plotters` (no script, no network): the
//! page shows them as they are, and a browser without JavaScript still sees them.

use plotters::prelude::*;

/// Size of every chart, in CSS pixels.
const SIZE: (u32, u32) = (520, 280);
const FONT: &str = "sans-serif";
const BAR: RGBColor = RGBColor(0x3b, 0x6e, 0xa8);
const MARK: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const WHISKER: RGBColor = RGBColor(0x22, 0x22, 0x22);

/// An axis value as people write it: "3", "12000", "0.25" (not "3.0", "12000.0").
fn tick(v: &f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One bar of a horizontal bar chart: its label, its length, and an optional whisker
/// `(low, dot, high)` drawn over it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub whisker: Option<(f64, f64, f64)>,
}

/// A horizontal bar chart, one bar per row, labels on the left. `None` with no bars.
pub fn bars(caption: &str, x_desc: &str, rows: &[Bar]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let top = rows
        .iter()
        .map(|b| b.whisker.map_or(b.value, |w| w.2.max(b.value)))
        .fold(0.0f64, f64::max);
    // Negative values (a difference B - A) extend the axis left of zero.
    let bottom = rows
        .iter()
        .map(|b| b.whisker.map_or(b.value, |w| w.0.min(b.value)))
        .fold(0.0f64, f64::min);
    let (bottom, top) = match (bottom < 0.0, top > 0.0) {
        (false, false) => (0.0, 1.0),
        (neg, pos) => (
            if neg { bottom * 1.08 } else { 0.0 },
            if pos { top * 1.08 } else { 0.0 },
        ),
    };
    let longest = rows
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4);
    let height = SIZE.1.max(70 + 26 * rows.len() as u32);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = rows.len() as u32;
        let last = (n - 1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size((longest as u32 * 7 + 12).clamp(40, 200))
            // A discrete range includes its end: 0..last makes last + 1 slots (at least two: a
            // one-slot range draws bars of negative height). The first row is drawn on top, so
            // slot s holds row last - s.
            .build_cartesian_2d(bottom..top, (0u32..last).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(s) if *s <= last => rows
                    .get((last - *s) as usize)
                    .map(|b| b.label.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc(x_desc)
            .x_label_formatter(&tick)
            .label_style((FONT, 12))
            .draw()?;
        chart.draw_series(
            Histogram::horizontal(&chart)
                .style(BAR.mix(0.85).filled())
                .margin(6)
                .data(
                    rows.iter()
                        .enumerate()
                        .map(|(i, b)| (last - i as u32, b.value)),
                ),
        )?;
        chart.draw_series(rows.iter().enumerate().filter_map(|(i, b)| {
            b.whisker.map(|(lo, dot, hi)| {
                ErrorBar::new_horizontal(
                    SegmentValue::CenterOf(last - i as u32),
                    lo,
                    dot,
                    hi,
                    WHISKER.stroke_width(2),
                    10,
                )
            })
        }))?;
        root.present()?;
        Ok(())
    })();
    drawn.ok().map(|()| svg)
}

/// A histogram of `values` over `[lo, hi)` in `bins` equal bins (values outside are counted in
/// the first or last), with labelled vertical marks. `None` with no values.
pub fn histogram(
    caption: &str,
    x_desc: &str,
    values: &[f64],
    (lo, hi): (f64, f64),
    bins: usize,
    marks: &[(f64, String)],
) -> Option<String> {
    if values.is_empty() || bins == 0 || hi <= lo {
        return None;
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for &v in values {
        let b = ((v - lo) / width).floor();
        let b = if b.is_nan() {
            0.0
        } else {
            b.clamp(0.0, (bins - 1) as f64)
        };
        counts[b as usize] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.12;
    let mut svg = String::new();
    let drawn =
        (|| -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(caption, (FONT, 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(lo..hi, 0f64..top)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(x_desc)
                .y_desc("records")
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style((FONT, 12))
                .draw()?;
            chart.draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
                |(i, &c)| {
                    let x0 = lo + i as f64 * width;
                    let mut r = Rectangle::new(
                        [(x0 + width * 0.04, 0.0), (x0 + width * 0.96, c as f64)],
                        BAR.mix(0.85).filled(),
                    );
                    r.set_margin(0, 0, 0, 0);
                    r
                },
            ))?;
            for (x, label) in marks {
                if *x < lo || *x > hi {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(
                        [(*x, 0.0), (*x, top)],
                        MARK.stroke_width(2),
                    ))?
                    .label(label.clone())
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MARK.stroke_width(2)));
            }
            if !marks.is_empty() {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .label_font((FONT, 12))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .draw()?;
            }
            root.present()?;
            Ok(())
        })();
    drawn.ok().map(|()| svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_draw_one_rect_per_bar_and_the_labels() {
        let rows = vec![
            Bar {
                label: "ok".into(),
                value: 7.0,
                whisker: None,
            },
            Bar {
                label: "fetch_timeout".into(),
                value: 2.0,
                whisker: Some((1.0, 2.0, 3.0)),
            },
        ];
        let svg = bars("Outcomes", "records", &rows).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        // plotters writes each text on its own line; the first row is the top one.
        let y_of = |label: &str| -> f64 {
            let end = svg
                .find(&format!(">\n{label}\n<"))
                .unwrap_or_else(|| panic!("no {label}: {svg}"));
            let tag = &svg[svg[..end].rfind("<text").unwrap()..end];
            tag.split("y=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(y_of("ok") < y_of("fetch_timeout"), "{svg}");
        y_of("Outcomes");
        assert_eq!(
            svg.matches("fill=\"#3B6EA8\"").count(),
            2,
            "one bar per row: {svg}"
        );
        assert!(bars("x", "y", &[]).is_none());
        // One bar: a real bar (a one-slot axis used to give it a negative height).
        let one = bars("One", "records", &rows[..1]).unwrap();
        assert!(!one.contains("height=\"-"), "{one}");
        assert_eq!(one.matches("fill=\"#3B6EA8\"").count(), 1, "{one}");
    }

    #[test]
    fn histogram_counts_out_of_range_values_in_the_end_bins() {
        let svg = histogram(
            "Summary length",
            "words",
            &[-5.0, 1.0, 50.0, 500.0],
            (0.0, 100.0),
            10,
            &[(80.0, "requested".into())],
        )
        .unwrap();
        assert!(svg.contains(">\nrequested\n<"), "{svg}");
        // Three non-empty bins (first, sixth, last), each a filled rect, plus the background.
        let filled = svg.matches("<rect").count();
        assert!(filled >= 4, "{filled} rects in {svg}");
        assert!(histogram("x", "y", &[], (0.0, 1.0), 4, &[]).is_none());
    }
}
