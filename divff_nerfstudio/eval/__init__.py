"""Evaluation: NeuralDiff's mask mAP and PSNR, DIV-FF's query segmentation, summary videos."""
