//! replayer/SCHEMA.md against the column tables: every column of each file, with its type and
//! nullability, in order — and nothing documented that the rows do not have.

use std::path::Path;

use results_schema::{File, SCHEMA_VERSION};

fn schema_md() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../SCHEMA.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `(column, type, nullable)` rows SCHEMA.md documents for `file` (a row naming several
/// columns, `a, b, c`, documents each of them).
fn documented(md: &str, file: &str) -> Vec<(String, String, bool)> {
    let head = format!("## {file} ");
    let start = md
        .find(&head)
        .unwrap_or_else(|| panic!("SCHEMA.md has no section {head:?}"));
    let section = &md[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut cols = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "column" || cells[1].starts_with("---") {
            continue;
        }
        let mut ty = cells[2].split(',').map(str::trim);
        let name = ty.next().unwrap().to_string();
        let nullable = ty.any(|t| t == "nullable");
        for c in cells[1].split(',') {
            cols.push((c.trim().to_string(), name.clone(), nullable));
        }
    }
    cols
}

#[test]
fn schema_md_documents_every_column_with_its_type_in_order() {
    let md = schema_md();
    assert!(
        md.starts_with(&format!(
            "# Replay results: the Parquet schema (version {SCHEMA_VERSION})"
        )),
        "SCHEMA.md's title names another version than {SCHEMA_VERSION}"
    );
    for f in File::ALL {
        let want: Vec<(String, String, bool)> = f
            .columns()
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.ty.schema_name().to_string(),
                    c.nullable,
                )
            })
            .collect();
        let got = documented(&md, f.file_name());
        assert!(!got.is_empty(), "no column table for {}", f.file_name());
        assert_eq!(got, want, "SCHEMA.md against the {} rows", f.file_name());
    }
}

#[test]
fn schema_md_documents_the_heap_map_mappings_file() {
    use results_schema::Row;
    use results_schema::heapmap::MappingRow;
    let want: Vec<(String, String, bool)> = MappingRow::COLUMNS
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.ty.schema_name().to_string(),
                c.nullable,
            )
        })
        .collect();
    let got = documented(&schema_md(), "<allocator>.maps.parquet");
    assert_eq!(got, want, "SCHEMA.md against MappingRow");
}

#[test]
fn the_parser_sees_a_column_missing_from_schema_md() {
    // The check above is only as good as its parser: drop one documented row and it differs.
    let md = schema_md().replace("| trace_hash |", "| (removed) |");
    let got = documented(&md, "runs.parquet");
    assert!(!got.iter().any(|c| c.0 == "trace_hash"));
    assert!(got.iter().any(|c| c.0 == "(removed)"));
}
