// See entry.c. Nothing to import: the symbols matter at link time only.
#pragma once
