use pyo3::prelude::*;

#[pymodule]
fn _turbokv(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
