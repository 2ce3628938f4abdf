// placeholder: the PTX wrapper header (mma.sync, ldmatrix, cp.async) for both paths.
#pragma once
