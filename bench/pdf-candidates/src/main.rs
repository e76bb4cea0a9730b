//! Prints the text of each PDF named on the command line with one candidate library, to
//! `OUT_DIR/NAME.txt`, and the seconds it took on stderr: `pdf-candidates LIB OUT_DIR FILE...`.
//! A panic or an error is reported per file and the rest go on.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (lib, out) = (&args[1], std::path::Path::new(&args[2]));
    for file in &args[3..] {
        let bytes = std::fs::read(file).unwrap();
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| -> Result<String, String> {
            match lib.as_str() {
                "pdf-extract" => pdf_extract::extract_text_from_mem(&bytes).map_err(|e| e.to_string()),
                "pdf_oxide" => {
                    let doc = pdf_oxide::PdfDocument::from_bytes(bytes.clone()).map_err(|e| e.to_string())?;
                    let pages = doc.page_count().map_err(|e| e.to_string())?;
                    let mut text = String::new();
                    for p in 0..pages {
                        text.push_str(&doc.extract_text(p).map_err(|e| e.to_string())?);
                        text.push('\n');
                    }
                    Ok(text)
                }
                other => Err(format!("unknown library {other}")),
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let name = std::path::Path::new(file).file_stem().unwrap().to_string_lossy().to_string();
        match result {
            Ok(Ok(text)) => {
                std::fs::write(out.join(format!("{name}.txt")), text).unwrap();
                eprintln!("{name}\t{secs:.6}\tok");
            }
            Ok(Err(e)) => eprintln!("{name}\t{secs:.6}\terror: {}", e.replace('\n', " ")),
            Err(_) => eprintln!("{name}\t{secs:.6}\tpanic"),
        }
    }
}
