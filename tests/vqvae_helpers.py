from vqtool.vqvae import VQVAEConfig, VQVAETask


def tiny_task(data):
    config = VQVAEConfig(hidden=8, res_hidden=4, embedding_dim=4, num_codes=16)
    return VQVAETask(config, data, None, data_info={"train_data": "blobs"})
