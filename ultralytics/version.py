"""The package version (a leaf module, so that every layer can record it without importing the package).

Scheme: `<published API level>+biformer.<n>` (PEP 440). The public part is the release of the published `ultralytics`
package whose user-facing API, formats and numbers this fork follows; the local label says it is this project and
counts our releases at that level. Tools that require `ultralytics>=X` accept it (local labels are ignored in
comparisons), so they do not pull the published package in beside it.
"""

__version__ = "8.4.190+biformer.1"
