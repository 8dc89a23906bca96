package volume

// testImages is the Images the store tests run on.
var testImages Images = QemuImg{}
