// Placeholder so the target builds; replaced by the code it will hold.
