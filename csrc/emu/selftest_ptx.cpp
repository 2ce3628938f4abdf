// placeholder: emulator self-test kernels (filled in by the emulator test work)
