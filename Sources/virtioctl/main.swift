print("virtioctl")
