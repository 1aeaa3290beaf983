"""The ground floor: domain models, the clock and ids, settings, in-process notifications and
small statistics. It imports no other package of this project (an import-linter contract in
``make lint`` holds that), so every layer above may use it."""
