package virtio

// Queue is a split virtqueue (virtio 1.x section 2.7).
type Queue struct{}
