// Tenure's small client-side layer. htmx does the swapping; this file holds
// only behaviour htmx has no attribute for. Loaded as a file (CSP: script-src 'self').
"use strict";
